"""MNIST (LeCun et al. 1998) in its IDX format, downloaded by torchvision (``MNIST/raw/*-ubyte``).

An ID dataset (10 classes, 60,000 train / 10,000 test, 28x28 grayscale) that CIFAR runs use as
a far-OOD set (converted to the backbone's 32x32 RGB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torchvision.datasets as tvd
from torchvision.datasets.mnist import read_image_file, read_label_file

from oodbench.api import DatasetSpec
from oodbench.data.download import DownloadedFiles
from oodbench.data.source import ImageSet
from oodbench.errors import DataError

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _reader(split: str):
    images_name, labels_name = FILES[split]

    def read(root: Path) -> ImageSet:
        raw = root / "MNIST" / "raw"
        try:
            images = read_image_file(str(raw / images_name)).numpy()
            labels = read_label_file(str(raw / labels_name)).numpy()
        except (OSError, ValueError, RuntimeError, AssertionError) as error:
            raise DataError(f"cannot read MNIST IDX files in {raw}: {error}", "delete them and let oodbench download them again") from None
        if len(images) != len(labels):
            raise DataError(f"{raw}: {len(images)} images but {len(labels)} labels")
        return ImageSet(labels=labels.astype(np.int64), array=images.astype(np.uint8)[..., None])

    return read


def _source(split: str) -> DownloadedFiles:
    return DownloadedFiles(
        folder="mnist",
        required=tuple(f"MNIST/raw/{name}" for name in FILES[split]),
        download=lambda root: tvd.MNIST(str(root), train=split == "train", download=True),
        reader=_reader(split),
        url=tvd.MNIST.mirrors[0],
        official_count=60_000 if split == "train" else 10_000,
    )


MNIST = DatasetSpec(
    name="mnist",
    role="id",
    source="mnist",
    splits={"train": _source("train"), "test": _source("test")},
    num_classes=10,
    classes=tuple(str(d) for d in range(10)),
    description="MNIST handwritten digits, 28x28 grayscale (torchvision download)",
    citation="LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition, 1998",
)
