"""Image lists: a text file naming one image and its label per line, over a folder of images.

The on-disk layout of OpenOOD (v1.5) is read as it is: ``<data root>/benchmark_imglist/<benchmark>/
<split>.txt`` lists ``<path> <label>`` per line (label ``-1`` for images without a class), and the
paths are relative to ``<data root>/images_classic/`` or ``<data root>/images_largescale/``. So a
researcher who downloaded OpenOOD's data points ``--data-root`` at that folder. A list is the subset
(OpenOOD filters some sets per benchmark): the images it names are the split, in its order, and no
others.

The split's identity is the list file's sha256 and the names and sizes of the images it names, so
editing the list or replacing an image changes every cache key downstream.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oodbench.data.source import ImageFormat, ImageSet, Source, SourceContext, open_image
from oodbench.errors import DataError
from oodbench.hashing import stable_hash


def parse_image_list(path: Path) -> tuple[list[str], np.ndarray]:
    """The image paths and labels of a list file: ``<path> <label>`` per line, blank lines skipped."""
    names, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, _, label = line.strip().partition(" ")
        try:
            labels.append(int(label))
        except ValueError:
            raise DataError(f"{path}, line {number}: {line.strip()!r} is not '<image path> <integer label>'",
                            "restore the list file from its release") from None
        if name.startswith("/") or ".." in Path(name).parts:
            raise DataError(f"{path}, line {number}: image path {name!r} leaves the image folder",
                            "restore the list file from its release")
        names.append(name)
    return names, np.array(labels, dtype=np.int64)


class ImageListSource(Source):
    """One split given by a list file over an image folder, both relative to the data root.

    Both paths are relative to the data root (or absolute: a catalog's). ``how_to_get`` says where the
    files come from when they are missing (the release, its download command); ``sha256``, when given,
    is the list file's; ``count`` is the release's number of images (for plan estimates; a list of another
    length, such as a small copy in the release's format, is read as it is and noted with the results).
    """

    def __init__(self, list_file: str, image_dir: str, how_to_get: str, count: int | None = None,
                 labelled: bool = True, sha256: str | None = None) -> None:
        self.list_file, self.image_dir, self.how_to_get = list_file, image_dir, how_to_get
        self.count, self.labelled, self.sha256 = count, labelled, sha256.lower() if sha256 else None

    def _paths(self, ctx: SourceContext) -> tuple[Path, Path]:
        root = Path(ctx.data_root)
        return root / self.list_file, root / self.image_dir

    def _missing(self, what: str, ctx: SourceContext) -> DataError:
        return DataError(f"{what} not found under the data root {ctx.data_root}",
                         f"{self.how_to_get}; then pass --data-root DIR (the folder that holds benchmark_imglist/)")

    def _listed(self, ctx: SourceContext) -> tuple[Path, list[str], np.ndarray]:
        list_path, image_dir = self._paths(ctx)
        if not list_path.is_file():
            raise self._missing(f"image list {self.list_file}", ctx)
        names, labels = parse_image_list(list_path)
        return image_dir, names, labels

    def identity(self, ctx: SourceContext) -> dict:
        image_dir, names, _ = self._listed(ctx)
        sizes = []
        for name in names:
            try:
                sizes.append((name, (image_dir / name).stat().st_size))
            except OSError:
                raise self._missing(f"{image_dir.name}/{name} (named by {self.list_file})", ctx) from None
        digest = ctx.digests.digest(self._paths(ctx)[0])
        if self.sha256 is not None and digest != self.sha256:
            raise DataError(f"sha256 of {self._paths(ctx)[0]} is {digest}, expected {self.sha256}: a different version of the list",
                            "restore the list file, or correct its sha256 if the file is the one you meant")
        return {"kind": "image-list", "list": digest, "images": stable_hash(sizes, 32), "labelled": self.labelled}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        image_dir, names, labels = self._listed(ctx)
        files = [image_dir / name for name in names]
        if not self.labelled:
            labels = np.full(len(names), -1, dtype=np.int64)
        image_set = ImageSet(labels=labels, load=lambda i: open_image(files[i], str(files[i])), names=[str(f) for f in files])
        if self.count is not None and len(names) != self.count:  # a partial copy is read as it is, and says so
            image_set.notes.append(f"{self.list_file} lists {len(names)} images; the release lists {self.count}")
        return image_set

    def expected_count(self) -> int | None:
        return self.count

    def describe(self) -> str:
        return f"list {self.list_file} over {self.image_dir}/"
