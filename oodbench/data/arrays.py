"""Materialise a dataset split once into a uint8 array cache, keyed by its content.

Every split is converted to the backbone's :class:`ImageFormat` (resize of the shorter side,
bilinear, then a center crop; gray <-> RGB) and saved as ``N x H x W x C`` uint8 with its labels.
Later runs memory-map the arrays. The cache key hashes the source's content identity (its
checksums) and the format, so changed files or a different backbone resolution materialise anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image

from oodbench.api import DatasetSpec
from oodbench.data.source import ImageFormat, ImageSet, SourceContext
from oodbench.data.subsets import subset_indices
from oodbench.engine.cache import ArtifactCache, save_array
from oodbench.errors import DataError
from oodbench.hashing import array_hash, stable_hash
from oodbench.progress import progress

#: Bump when the conversion below changes, so that cached arrays are rebuilt.
MATERIALIZE_VERSION = 1
STAGE = "arrays"


@dataclass(frozen=True)
class SplitArrays:
    """The images and labels of one split (or a subset of it), with a hash of their content."""

    dataset: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    content_hash: str
    fmt: ImageFormat
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.split}"

    def limited(self, limit: int | None, seed: int = 0) -> "SplitArrays":
        """A deterministic subset of at most ``limit`` samples (stratified when labelled)."""
        indices = subset_indices(self.labels, limit, seed)
        if indices is None:
            return self
        return SplitArrays(
            dataset=self.dataset,
            split=self.split,
            images=self.images[indices],
            labels=self.labels[indices],
            content_hash=stable_hash({"parent": self.content_hash, "indices": array_hash(indices)}),
            fmt=self.fmt,
            notes=self.notes + (f"subset of {len(indices)} / {len(self)} (seed {seed})",),
        )


def convert(item: Image.Image | np.ndarray, fmt: ImageFormat) -> np.ndarray:
    """One image as a ``size x size x channels`` uint8 array (resize shorter side, center crop)."""
    if isinstance(item, np.ndarray):
        array = item if item.ndim == 3 else item[..., None]
        if array.shape[:2] == (fmt.size, fmt.size) and array.shape[2] == fmt.channels and array.dtype == np.uint8:
            return array
        item = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    image = item.convert("L" if fmt.channels == 1 else "RGB")
    if image.size != (fmt.size, fmt.size):
        image = TF.center_crop(TF.resize(image, fmt.size), fmt.size)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if fmt.channels == 1 else array


def _convert_all(image_set: ImageSet, fmt: ImageFormat, label: str) -> np.ndarray:
    n = len(image_set)
    out = np.empty((n, fmt.size, fmt.size, fmt.channels), dtype=np.uint8)
    if image_set.array is not None:
        items = image_set.array
        if items.shape[1:] == out.shape[1:]:
            out[:] = items
            return out
        loader = items.__getitem__
    else:
        loader = image_set.load
    for i in progress(range(n), desc=f"materialise {label}", unit="img"):
        try:
            out[i] = convert(loader(i), fmt)
        except DataError:
            raise
        except Exception as error:  # a decoder or conversion error of one item: name the item
            raise DataError(f"cannot convert {image_set.name(i)} of {label}: {error}") from None
    return out


def materialize(spec: DatasetSpec, split: str, fmt: ImageFormat, ctx: SourceContext, cache: ArtifactCache) -> SplitArrays:
    """The cached arrays of ``spec``'s ``split`` in ``fmt``, materialising them on first use."""
    source = spec.source(split)
    source.fetch(ctx)
    identity = source.identity(ctx)
    key = stable_hash({"identity": identity, "format": fmt, "version": MATERIALIZE_VERSION})
    label = f"{spec.name}/{split}"
    artifact = cache.get(STAGE, key)
    if artifact is None:
        image_set = source.read(ctx, fmt)
        images = _convert_all(image_set, fmt, label)
        labels = np.asarray(image_set.labels, dtype=np.int64)
        meta = {
            "dataset": spec.name,
            "split": split,
            "format": fmt.describe(),
            "count": int(len(labels)),
            "content_hash": array_hash(images, labels),
            "identity": identity,
            "notes": list(image_set.notes),
        }
        with cache.put(STAGE, key, meta) as directory:
            save_array(directory, "images", images)
            save_array(directory, "labels", labels)
        artifact = cache.open(STAGE, key)
    return SplitArrays(
        dataset=spec.name,
        split=split,
        images=artifact.array("images", mmap=True),
        labels=artifact.array("labels"),
        content_hash=artifact.meta["content_hash"],
        fmt=fmt,
        notes=tuple(artifact.meta.get("notes", ())),
    )
