"""Where the images of one dataset split come from, and how they are identified.

A :class:`Source` knows three things: how to fetch its files (a download, when it has one), the
*content identity* of its files (checksums, used in every cache key downstream), and how to read
its images. The generic sources here (zip archive or folder in ImageFolder layout, ``.npz``
arrays) serve catalog files and plugins; dataset families with their own on-disk format define
their sources in ``datasets/``.
"""

from __future__ import annotations

import io
import os
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from oodbench.errors import DataError
from oodbench.hashing import DigestMemo, stable_hash

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass(frozen=True)
class ImageFormat:
    """What every image of a split is converted to before it is cached: ``size x size x channels``, by a
    resize of the shorter side to ``resize`` (``size`` when None) with ``interpolation`` (a
    torchvision ``InterpolationMode`` value) and a centre crop to ``size``: a backbone's test transform."""

    size: int
    channels: int
    resize: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, not {self.channels}")
        if self.resize is not None and self.resize < self.size:
            raise ValueError(f"a resize to {self.resize} pixels cannot be cropped to {self.size}")

    @classmethod
    def of(cls, backbone) -> "ImageFormat":
        """The test transform a :class:`BackboneSpec` declares."""
        return cls(backbone.input_size, backbone.channels, backbone.resize_size, backbone.interpolation)

    def describe(self) -> str:
        shape = f"{self.size}x{self.size}x{self.channels}"
        if self.resize is None and self.interpolation == "bilinear":
            return shape
        return f"{shape} (resize {self.resize or self.size} {self.interpolation}, crop)"


@dataclass
class SourceContext:
    """What a source needs besides itself: the download root, whether it may download, a digest memo."""

    data_root: Path
    download: bool
    digests: DigestMemo


def no_labels(count: int) -> np.ndarray:
    """Labels of ``count`` images without a class: -1 each (OOD and auxiliary sets)."""
    return np.full(count, -1, dtype=np.int64)


@dataclass
class ImageSet:
    """The raw images of one split: either a decoded uint8 array or a per-item loader.

    ``load(i)`` returns a PIL image or an ``H x W [x C]`` uint8 array; materialisation calls it from
    several threads at once (:func:`oodbench.data.arrays.decode_threads`), or, with ``sequential``, in
    index order from one thread (a generator that draws item after item). ``names[i]`` says where item
    ``i`` lives (a file, an archive member), for error messages.
    """

    labels: np.ndarray
    array: np.ndarray | None = None
    load: Callable[[int], Image.Image | np.ndarray] | None = None
    names: Sequence[str] | None = None
    notes: list[str] = field(default_factory=list)
    sequential: bool = False

    @classmethod
    def unlabelled(cls, array: np.ndarray) -> "ImageSet":
        """A decoded array of images without classes."""
        return cls(labels=no_labels(len(array)), array=array)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def name(self, index: int) -> str:
        return self.names[index] if self.names is not None else f"item {index}"


class Source(ABC):
    """The images of one dataset split."""

    @abstractmethod
    def identity(self, ctx: SourceContext) -> dict:
        """A JSON-able description of the split's *content* (checksums), verified against the files.

        Raises :class:`DataError` naming the missing or corrupt file and the fix.
        """

    @abstractmethod
    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        """The images and labels. Generated sources (noise) may produce ``fmt`` directly."""

    def fetch(self, ctx: SourceContext) -> None:  # noqa: B027  (sources without a download need nothing)
        """Download the files into ``ctx.data_root`` if the source has a download and they are missing."""

    def verify(self, ctx: SourceContext) -> dict:
        """Check the files themselves (``oodbench data verify``); the identity, or a :class:`DataError`."""
        return self.identity(ctx)

    def describe(self) -> str:
        """Where the data comes from, for ``oodbench list datasets``."""
        return type(self).__name__

    def expected_count(self) -> int | None:
        """How many images the split has, when known without reading it (for plan estimates)."""
        return getattr(self, "count", None)


def open_image(data: bytes | str | os.PathLike, where: str) -> Image.Image:
    """Decode one image fully, turning any decoder error into a :class:`DataError` naming ``where``."""
    try:
        image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        image.load()
        return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(
            f"cannot decode image {where}: {error}",
            "replace the file with a readable image (or remove it and correct the expected count)",
        ) from None


def _label_of(member: str, labelled: bool, class_index: dict[str, int] | None) -> int:
    if not labelled:
        return -1
    parts = member.split("/")
    if len(parts) < 2:
        raise DataError(f"labelled archive member {member} is not inside a class folder")
    return class_index[parts[-2]]


def _class_index(members: Sequence[str], classes: Sequence[str] | None, where: str) -> dict[str, int]:
    found = sorted({m.split("/")[-2] for m in members if "/" in m})
    names = list(classes) if classes else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(
            f"{where} has class folders {unknown[:5]} that are not among the declared classes",
            "correct the 'classes' list of the dataset or the archive layout",
        )
    return {name: i for i, name in enumerate(names)}


def _check_count(found: int, expected: int | None, where: str) -> None:
    if expected is not None and found != expected:
        raise DataError(
            f"{where} holds {found} images but {expected} are expected",
            "re-copy the complete file, or correct 'count' where the dataset is declared",
        )


class ZipImageFolderSource(Source):
    """A zip archive in ImageFolder layout (``<class>/<file>`` when labelled), verified by sha256."""

    def __init__(
        self,
        path: str | os.PathLike,
        sha256: str | None = None,
        count: int | None = None,
        labelled: bool = False,
        classes: Sequence[str] | None = None,
        declared_in: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.sha256 = sha256.lower() if sha256 else None
        self.count = count
        self.labelled = labelled
        self.classes = tuple(classes) if classes else None
        self.declared_in = declared_in

    def _where(self) -> str:
        return f"{self.path}" + (f" (declared in {self.declared_in})" if self.declared_in else "")

    def identity(self, ctx: SourceContext) -> dict:
        """The archive's checksum; when the archive is gone but its sha256 is declared, the declared
        one (arrays materialised before stay usable; reading the archive again then fails clearly)."""
        if not self.path.is_file() and self.sha256 is not None:
            return {"kind": "zip-imagefolder", "sha256": self.sha256, "labelled": self.labelled, "classes": self.classes}
        return self.verify(ctx)

    def verify(self, ctx: SourceContext) -> dict:
        if not self.path.is_file():
            raise DataError(f"archive {self._where()} not found",
                            "copy the archive there or correct its 'path' (relative to the catalog file)")
        actual = ctx.digests.digest(self.path)
        if self.sha256 is not None and actual != self.sha256:
            raise DataError(
                f"sha256 of {self._where()} is {actual}, expected {self.sha256}: the file is corrupt or a different version",
                "re-copy the archive, or correct 'sha256' if the file is the one you meant",
            )
        return {"kind": "zip-imagefolder", "sha256": actual, "labelled": self.labelled, "classes": self.classes}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        self.verify(ctx)
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as error:
            raise DataError(
                f"{self._where()} is not a readable zip archive ({error}); it is probably truncated",
                "re-copy the complete archive",
            ) from None
        members = [m for m in archive.namelist() if m.lower().endswith(IMAGE_SUFFIXES)]
        _check_count(len(members), self.count, self._where())
        index = _class_index(members, self.classes, self._where()) if self.labelled else None
        labels = np.array([_label_of(m, self.labelled, index) for m in members], dtype=np.int64)

        def load(i: int) -> Image.Image:
            where = f"{members[i]} in {self.path}"
            try:
                data = archive.read(members[i])
            except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as error:
                raise DataError(f"cannot read {where}: {error}", "re-copy the complete archive") from None
            return open_image(data, where)

        return ImageSet(labels=labels, load=load, names=[f"{self.path.name}:{m}" for m in members])

    def describe(self) -> str:
        return f"zip {self.path}"


def list_image_files(root: Path) -> list[Path]:
    """Every image file below ``root``, sorted by relative path (hidden files skipped)."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def folder_image_set(
    path: Path, labelled: bool = False, classes: Sequence[str] | None = None, count: int | None = None
) -> ImageSet:
    """The images below a directory (ImageFolder layout when ``labelled``), decoded on demand."""
    if not path.is_dir():
        raise DataError(f"image folder {path} not found", "create it or correct the path")
    files = list_image_files(path)
    _check_count(len(files), count, str(path))
    members = [p.relative_to(path).as_posix() for p in files]
    index = _class_index(members, classes, str(path)) if labelled else None
    labels = np.array([_label_of(m, labelled, index) for m in members], dtype=np.int64)
    return ImageSet(labels=labels, load=lambda i: open_image(files[i], str(files[i])), names=[str(p) for p in files])


class ImageFolderSource(Source):
    """A directory of images in ImageFolder layout; identified by its file names, sizes and times."""

    def __init__(
        self,
        path: str | os.PathLike,
        count: int | None = None,
        labelled: bool = False,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.count = count
        self.labelled = labelled
        self.classes = tuple(classes) if classes else None

    def identity(self, ctx: SourceContext) -> dict:
        if not self.path.is_dir():
            raise DataError(f"image folder {self.path} not found", "create it or correct the path")
        listing = [(p.relative_to(self.path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in list_image_files(self.path)]
        return {"kind": "imagefolder", "listing": stable_hash(listing, 32), "labelled": self.labelled, "classes": self.classes}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        return folder_image_set(self.path, self.labelled, self.classes, self.count)

    def describe(self) -> str:
        return f"folder {self.path}"


class NpzSource(Source):
    """An ``.npz`` file with ``images`` (``N x H x W [x C]`` uint8) and optional ``labels``."""

    def __init__(self, path: str | os.PathLike, sha256: str | None = None) -> None:
        self.path = Path(path)
        self.sha256 = sha256

    def identity(self, ctx: SourceContext) -> dict:
        if not self.path.is_file():
            raise DataError(f"array file {self.path} not found", "create it or correct the path")
        actual = ctx.digests.digest(self.path)
        if self.sha256 is not None and actual != self.sha256:
            raise DataError(f"sha256 of {self.path} is {actual}, expected {self.sha256}", "re-copy the file")
        return {"kind": "npz", "sha256": actual}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        try:
            with np.load(self.path) as data:
                images = np.asarray(data["images"])
                labels = np.asarray(data["labels"]) if "labels" in data else no_labels(len(images))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(f"cannot read arrays from {self.path}: {error}", "it needs an 'images' array") from None
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise DataError(f"{self.path}: 'images' must be uint8 N x H x W [x C], got {images.dtype} {images.shape}")
        if images.ndim == 3:
            images = images[..., None]
        return ImageSet(labels=labels.astype(np.int64), array=images)

    def describe(self) -> str:
        return f"npz {self.path}"
