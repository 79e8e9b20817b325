"""Materialise a dataset split once into a uint8 array cache, keyed by its content.

Every split is converted to the backbone's :class:`ImageFormat` (resize of the shorter side,
bilinear, then a center crop; gray <-> RGB) and saved as ``N x H x W x C`` uint8 with its labels.
Later runs memory-map the arrays. The cache key hashes the source's content identity (its
checksums) and the format, so changed files or a different backbone resolution materialise anew.

A split as a run uses it (:class:`SplitArrays`) may be a deterministic subset (``--limit``); its
``key`` hashes the arrays' key and the limit, so every downstream key is known from the sources'
checksums alone, before anything is decoded (that is what lets ``oodbench plan`` show what is
cached).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image

from oodbench.api import DatasetSpec
from oodbench.data.source import ImageFormat, ImageSet, Source, SourceContext
from oodbench.data.subsets import subset_indices
from oodbench.engine.cache import ArtifactCache, save_array
from oodbench.errors import ConfigError, DataError
from oodbench.hashing import array_hash, code_closure, stable_hash
from oodbench.progress import progress

STAGE = "materialise"


@dataclass(frozen=True)
class SplitArrays:
    """The images and labels of one split (or a subset of it), with a hash of their content."""

    dataset: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    #: identity of the split as used (arrays key + limit): part of every downstream cache key
    key: str
    #: hash of the pixels and labels, recorded in the provenance
    content_hash: str
    fmt: ImageFormat
    notes: tuple[str, ...] = field(default=())
    #: the positions of these samples in the whole split (None: the whole split, in order)
    positions: np.ndarray | None = None

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
            key=self.key,
            content_hash=stable_hash({"parent": self.content_hash, "indices": array_hash(indices)}),
            fmt=self.fmt,
            notes=self.notes + (f"subset of {len(indices)} / {len(self)} (seed {seed})",),
            positions=indices if self.positions is None else self.positions[indices],
        )

    def rows_outside(self, other: "SplitArrays") -> np.ndarray:
        """The rows of this split (indices into it, in order) whose samples are not in ``other``, a
        subset of the same whole split (e.g. a validation slice held out of a fit)."""
        if other.dataset != self.dataset or other.split != self.split:
            raise ValueError(f"{other.label} is not a subset of {self.label}'s split")
        mine = np.arange(len(self)) if self.positions is None else self.positions
        theirs = np.arange(len(other)) if other.positions is None else other.positions
        return np.flatnonzero(~np.isin(mine, theirs))


def split_source(spec: DatasetSpec, split: str) -> Source:
    """The source of one split of a dataset; a clear error naming the splits it has."""
    if split not in spec.splits:
        raise ConfigError(f"dataset '{spec.name}' has no split '{split}'", f"available splits: {', '.join(spec.splits)}")
    return spec.splits[split]


def evaluation_split(spec: DatasetSpec) -> str:
    """The split a dataset is evaluated on: ``test`` when it has one, else its only split."""
    if "test" in spec.splits:
        return "test"
    if len(spec.splits) == 1:
        return next(iter(spec.splits))
    raise ConfigError(f"dataset '{spec.name}' has no 'test' split", f"its splits: {', '.join(spec.splits)}")


def training_split(spec: DatasetSpec) -> str:
    """The split training reads: ``train`` when it has one, else the evaluation split."""
    return "train" if "train" in spec.splits else evaluation_split(spec)


def arrays_key(source: Source, identity: dict, fmt: ImageFormat) -> str:
    """Cache key of a split's arrays: the source's content identity, the image format, and the code that
    reads and converts them."""
    return stable_hash({"identity": identity, "format": fmt, "code": code_closure(__name__, type(source))})


def split_key(arrays: str, limit: int | None) -> str:
    """Identity of a split as a run uses it: its arrays and the subset limit."""
    return stable_hash({"arrays": arrays, "limit": limit})


def convert(item: Image.Image | np.ndarray, fmt: ImageFormat) -> np.ndarray:
    """One image as a ``size x size x channels`` uint8 array (resize shorter side, center crop); an image
    already of that size is kept as it is unless the format resizes to another size first."""
    resize = fmt.resize or fmt.size
    if isinstance(item, np.ndarray):
        array = item if item.ndim == 3 else item[..., None]
        if (array.shape[:2] == (fmt.size, fmt.size) and resize == fmt.size and array.shape[2] == fmt.channels
                and array.dtype == np.uint8):
            return array
        item = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    image = item.convert("L" if fmt.channels == 1 else "RGB")
    if image.size != (fmt.size, fmt.size) or resize != fmt.size:
        image = TF.center_crop(TF.resize(image, resize, interpolation=TF.InterpolationMode(fmt.interpolation)), fmt.size)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if fmt.channels == 1 else array


#: images a decoding task converts and writes at once
CHUNK = 256
#: seconds per image above which decoding goes to a pool of threads (PIL's decoders and resizing release
#: the GIL; below this, Python's own work per image dominates and threads only contend for it)
PARALLEL_ABOVE_S = 5e-4


def decode_threads() -> int:
    """Threads that decode and resize images at once."""
    return max(1, min(8, os.cpu_count() or 1))


def write_images(path: Path, image_set: ImageSet, fmt: ImageFormat, label: str) -> None:
    """Convert every image of ``image_set`` and write them as one ``N x H x W x C`` uint8 ``.npy`` file at
    ``path``, :data:`CHUNK` images at a time, each chunk written at its place in the file. So memory holds
    at most one chunk per thread, whatever the split's size (a 50,000-image split at 224 px: 8 threads x
    256 x 150 KB, about 300 MB). The first chunk is converted here and timed; when an image takes longer
    than :data:`PARALLEL_ABOVE_S` (large files, large targets), the others are converted by
    :func:`decode_threads` threads."""
    n = len(image_set)
    shape = (n, fmt.size, fmt.size, fmt.channels)
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                                    "fortran_order": False, "shape": shape})
        offset = file.tell()
        if image_set.array is not None and image_set.array.shape[1:] == shape[1:] and (fmt.resize or fmt.size) == fmt.size:
            file.write(np.ascontiguousarray(image_set.array, dtype=np.uint8).tobytes())
            return
    loader = image_set.array.__getitem__ if image_set.array is not None else image_set.load
    row = fmt.size * fmt.size * fmt.channels
    descriptor = os.open(path, os.O_WRONLY)

    def convert_chunk(start: int) -> int:
        stop = min(start + CHUNK, n)
        chunk = np.empty((stop - start, *shape[1:]), dtype=np.uint8)
        for i in range(start, stop):
            try:
                chunk[i - start] = convert(loader(i), fmt)
            except DataError:
                raise
            except Exception as error:  # a decoder or conversion error of one item: name the item
                raise DataError(f"cannot convert {image_set.name(i)} of {label}: {error}") from None
        os.pwrite(descriptor, memoryview(chunk).cast("B"), offset + start * row)
        return stop - start

    def converted() -> Iterator[int]:
        started = time.perf_counter()
        first = convert_chunk(0) if n else 0
        yield from range(first)
        rest = range(CHUNK, n, CHUNK)
        if not first or image_set.sequential or (time.perf_counter() - started) / first < PARALLEL_ABOVE_S:
            yield from (tick for start in rest for tick in range(convert_chunk(start)))
            return
        pool = ThreadPoolExecutor(decode_threads(), thread_name_prefix="decode")
        try:
            yield from (tick for count in pool.map(convert_chunk, rest) for tick in range(count))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    try:
        for _ in progress(converted(), desc=f"materialise {label}", total=n, unit="img"):
            pass
    finally:
        os.close(descriptor)


def materialize(spec: DatasetSpec, split: str, fmt: ImageFormat, ctx: SourceContext, cache: ArtifactCache,
                limit: int | None = None, on_computed: Callable[[int, float], None] | None = None) -> SplitArrays:
    """The cached arrays of ``spec``'s ``split`` in ``fmt`` (materialised on first use), limited to
    a deterministic subset of ``limit`` images. ``on_computed(images, seconds)`` hears of a fresh
    materialisation."""
    source = split_source(spec, split)
    source.fetch(ctx)
    identity = source.identity(ctx)
    key = arrays_key(source, identity, fmt)
    label = f"{spec.name}/{split}"

    def compute(directory) -> dict:
        started = time.perf_counter()
        image_set = source.read(ctx, fmt)
        labels = np.asarray(image_set.labels, dtype=np.int64)
        write_images(directory / "images.npy", image_set, fmt, label)  # never whole in memory
        save_array(directory, "labels", labels)
        if on_computed is not None:
            on_computed(len(labels), time.perf_counter() - started)
        return {"dataset": spec.name, "split": split, "format": fmt.describe(), "count": int(len(labels)),
                "content_hash": array_hash(directory / "images.npy", labels), "identity": identity, "notes": list(image_set.notes)}

    def load(artifact) -> SplitArrays:
        return SplitArrays(dataset=spec.name, split=split, images=artifact.array("images", mmap=True),
                           labels=artifact.array("labels"), key=split_key(key, limit),
                           content_hash=artifact.meta["content_hash"], fmt=fmt, notes=tuple(artifact.meta.get("notes", ())))

    return cache.cached(STAGE, key, compute, load).limited(limit)
