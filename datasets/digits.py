"""The demo's data, shipped with scikit-learn: 8x8 handwritten digits and patches of two photos.

- ``digits`` (ID): digit classes 0-5 of :func:`sklearn.datasets.load_digits` (1,797 images of
  8x8 pixels with 17 gray levels), split per class 2/3 train, 1/3 test with a fixed seed.
- ``digits-heldout`` (near-OOD): all images of the digit classes 6-9, never seen in training.
- ``photo-patches`` (far-OOD): 1,000 random square patches of scikit-learn's two sample photos
  (``china.jpg``, ``flower.jpg``), 16 to 64 pixels wide, fixed seed.

Nothing is downloaded; the content identity is the sha256 of scikit-learn's bundled files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sklearn.datasets
from PIL import Image

from oodbench.api import DatasetSpec
from oodbench.data.source import (
    ImageFormat,
    ImageSet,
    Source,
    SourceContext,
    no_labels,
    open_image,
)

ID_CLASSES = (0, 1, 2, 3, 4, 5)
HELDOUT_CLASSES = (6, 7, 8, 9)
_SKLEARN = Path(sklearn.datasets.__file__).parent


def _digit_split(labels: np.ndarray, split: str, seed: int = 0) -> np.ndarray:
    """Per class, the first 2/3 of a seeded permutation is train, the rest test."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = (2 * len(members)) // 3
        chosen.append(members[:cut] if split == "train" else members[cut:])
    return np.sort(np.concatenate(chosen))


class DigitsSource(Source):
    """Images of some digit classes (relabelled 0..K-1 when ``labelled``), one split or all."""

    def __init__(self, classes: tuple[int, ...], split: str | None, labelled: bool) -> None:
        self.classes = classes
        self.split = split
        self.labelled = labelled

    def identity(self, ctx: SourceContext) -> dict:
        return {"kind": "sklearn-digits", "sha256": ctx.digests.digest(_SKLEARN / "data" / "digits.csv.gz"),
                "classes": self.classes, "split": self.split, "labelled": self.labelled}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        digits = sklearn.datasets.load_digits()
        keep = np.isin(digits.target, self.classes)
        images = np.round(digits.images[keep] * (255 / 16)).astype(np.uint8)[..., None]
        targets = digits.target[keep]
        if self.split is not None:
            index = _digit_split(targets, self.split)
            images, targets = images[index], targets[index]
        labels = np.searchsorted(np.array(self.classes), targets) if self.labelled else no_labels(len(targets))
        return ImageSet(labels=labels.astype(np.int64), array=images)

    def describe(self) -> str:
        part = f"{self.split} split" if self.split else "all images"
        return f"scikit-learn digits {self.classes}, {part}"


class PhotoPatchesSource(Source):
    """Random square patches of scikit-learn's sample photos."""

    PHOTOS = ("china.jpg", "flower.jpg")

    def __init__(self, count: int, seed: int) -> None:
        self.count = count
        self.seed = seed

    def identity(self, ctx: SourceContext) -> dict:
        digests = [ctx.digests.digest(_SKLEARN / "images" / name) for name in self.PHOTOS]
        return {"kind": "photo-patches", "photos": digests, "count": self.count, "seed": self.seed}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        photos = [open_image(str(_SKLEARN / "images" / name), name) for name in self.PHOTOS]
        rng = np.random.default_rng(self.seed)
        boxes = []
        for _ in range(self.count):
            photo = int(rng.integers(len(photos)))
            width, height = photos[photo].size
            side = int(rng.integers(16, 65))
            left, top = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            boxes.append((photo, (left, top, left + side, top + side)))

        def load(i: int) -> Image.Image:
            photo, box = boxes[i]
            return photos[photo].crop(box)

        return ImageSet(labels=np.full(self.count, -1, dtype=np.int64), load=load,
                        names=[f"{self.PHOTOS[p]} patch {box}" for p, box in boxes])

    def describe(self) -> str:
        return f"{self.count} patches of scikit-learn's sample photos, seed {self.seed}"


DIGITS = DatasetSpec(
    name="digits",
    role="id",
    source="sklearn-digits",
    splits={"train": DigitsSource(ID_CLASSES, "train", True), "test": DigitsSource(ID_CLASSES, "test", True)},
    num_classes=len(ID_CLASSES),
    classes=tuple(str(c) for c in ID_CLASSES),
    description="scikit-learn 8x8 digits, classes 0-5 (demo ID set; ships with scikit-learn)",
    citation="Alpaydin & Kaynak, Optical Recognition of Handwritten Digits, UCI 1998",
    default_ood=("digits-heldout", "photo-patches", "gaussian", "uniform"),
)

DIGITS_HELDOUT = DatasetSpec(
    name="digits-heldout",
    role="ood",
    source="sklearn-digits",
    splits={"test": DigitsSource(HELDOUT_CLASSES, None, False)},
    description="scikit-learn 8x8 digits of the held-out classes 6-9 (demo near-OOD set)",
)

PHOTO_PATCHES = DatasetSpec(
    name="photo-patches",
    role="ood",
    source="sklearn-sample-images",
    splits={"test": PhotoPatchesSource(1000, seed=0)},
    description="patches of scikit-learn's two sample photos (demo far-OOD set)",
)
