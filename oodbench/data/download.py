"""Sources whose files are fetched by a torchvision / pytorch-ood download (checksum-verified).

A :class:`DownloadedFiles` source lives in ``<data root>/<folder>``. When its files are missing
it calls the library's own download (which checks the archive's md5), or, offline or with
``--no-download``, raises one error naming the missing files and the ways to supply them. Present
files are identified by content (md5 of files, names and sizes of image folders) and compared
with the official release's checksums where those are known: a mismatch does not stop the run
(small fake files in the real format are how the tests run) but is recorded with the results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from oodbench.data.source import (
    ImageFormat,
    ImageSet,
    Source,
    SourceContext,
    folder_image_set,
    list_image_files,
)
from oodbench.errors import DataError
from oodbench.hashing import stable_hash


class DownloadedFiles(Source):
    """Files under ``<data root>/<folder>``: ``required`` paths, a download, and a reader."""

    def __init__(
        self,
        folder: str,
        required: tuple[str, ...],
        download: Callable[[Path], None],
        reader: Callable[[Path], ImageSet],
        url: str,
        official_md5: dict[str, str] | None = None,
        official_count: int | None = None,
    ) -> None:
        self.folder = folder
        #: images of the official release (plan estimates; copies with other counts are read as they are)
        self.official_count = official_count
        self.required = required
        self._download = download
        self._reader = reader
        self.url = url
        self.official_md5 = official_md5 or {}

    def expected_count(self) -> int | None:
        return self.official_count

    def root(self, ctx: SourceContext) -> Path:
        return Path(ctx.data_root) / self.folder

    def _missing(self, ctx: SourceContext) -> list[str]:
        root = self.root(ctx)
        return [p for p in self.required if not (root / p).exists()]

    def _error(self, ctx: SourceContext, missing: list[str], reason: str) -> DataError:
        root = self.root(ctx)
        return DataError(
            f"{', '.join(missing)} not found in {root} ({reason})",
            f"connect to the internet and rerun (downloads {self.url}), or put the files in {root} "
            "(--data-root DIR or OODBENCH_HOME), or register a local copy in a catalog file (--catalog)",
        )

    def fetch(self, ctx: SourceContext) -> None:
        missing = self._missing(ctx)
        if not missing:
            return
        if not ctx.download:
            raise self._error(ctx, missing, "downloads are off")
        root = self.root(ctx)
        root.mkdir(parents=True, exist_ok=True)
        try:
            self._download(root)
        except Exception as error:  # network, HTTP and checksum errors of the library download
            raise self._error(ctx, missing, f"download failed: {type(error).__name__}: {error}") from None
        still_missing = self._missing(ctx)
        if still_missing:
            raise self._error(ctx, still_missing, "the download did not produce them")

    def identity(self, ctx: SourceContext) -> dict:
        missing = self._missing(ctx)
        if missing:
            raise self._error(ctx, missing, "not downloaded yet")
        root = self.root(ctx)
        parts: dict[str, str] = {}
        for relative in self.required:
            path = root / relative
            if path.is_dir():
                listing = [(p.relative_to(path).as_posix(), p.stat().st_size) for p in list_image_files(path)]
                parts[relative] = stable_hash(listing, 32)
            else:
                parts[relative] = ctx.digests.digest(path, "md5")
        checked = {
            relative: (parts.get(relative) or ctx.digests.digest(root / relative, "md5")) == md5
            for relative, md5 in self.official_md5.items()
            if (root / relative).is_file()
        }
        official = all(checked.values()) if checked else None
        return {"kind": f"files:{self.folder}", "parts": parts, "official": official}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        image_set = self._reader(self.root(ctx))
        if self.identity(ctx)["official"] is False:
            image_set.notes.append(f"files in {self.root(ctx)} differ from the official release (md5)")
        return image_set

    def describe(self) -> str:
        return f"{self.folder}/ ({self.url})"


def image_folder_reader(subdir: str) -> Callable[[Path], ImageSet]:
    """A reader for the unlabelled images below ``<root>/<subdir>`` (sorted by path)."""

    def read(root: Path) -> ImageSet:
        return folder_image_set(root / subdir)

    return read
