"""Small files in the exact on-disk formats of the real datasets, for tests without network."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def _images(rng: np.random.Generator, n: int, size: int = 32, channels: int = 3) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def cifar(root: Path, hundred: bool, per_class_train: int = 2, per_class_test: int = 1, seed: int = 0) -> None:
    """``cifar-10-batches-py`` (5 train batches + test batch) or ``cifar-100-python`` pickles."""
    rng = np.random.default_rng(seed)
    classes = 100 if hundred else 10
    base = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    base.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"

    def batch(per_class: int) -> dict:
        labels = np.repeat(np.arange(classes), per_class)
        rng.shuffle(labels)
        data = _images(rng, len(labels)).transpose(0, 3, 1, 2).reshape(len(labels), -1)
        return {"data": data, key: labels.tolist(), "filenames": [f"img{i}.png" for i in range(len(labels))]}

    def dump(name: str, content: dict) -> None:
        with open(base / name, "wb") as handle:
            pickle.dump(content, handle)

    if hundred:
        dump("train", {**batch(per_class_train), "coarse_labels": []})
        dump("test", batch(per_class_test))
        dump("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    else:
        for i in range(1, 6):
            dump(f"data_batch_{i}", batch(per_class_train))
        dump("test_batch", batch(per_class_test))
        dump("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def svhn(root: Path, n: int = 40, seed: int = 0) -> None:
    """``test_32x32.mat`` with ``X`` (32 x 32 x 3 x N) and ``y`` (N x 1, labels 1-10)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    images = _images(rng, n).transpose(1, 2, 3, 0)
    scipy.io.savemat(root / "test_32x32.mat", {"X": images, "y": rng.integers(1, 11, (n, 1))})


def mnist(root: Path, n: int = 30, seed: int = 0) -> None:
    """``MNIST/raw/t10k-{images-idx3,labels-idx1}-ubyte`` (and the train files) in IDX format."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix in ("t10k", "train"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


def image_folder(directory: Path, n: int, size: int, suffix: str = ".jpg", seed: int = 0, classes: list[str] | None = None) -> None:
    """A flat folder of images, or class folders when ``classes`` is given."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        target = directory / classes[i % len(classes)] if classes else directory
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_images(rng, 1, size)[0]).save(target / f"{i:05d}{suffix}")


def odin(root: Path, n: int = 25) -> None:
    """The layouts of the ODIN archives as extracted by pytorch-ood (36x36 LSUN crops, like the release)."""
    image_folder(root / "Imagenet" / "test", n, 32)
    image_folder(root / "Imagenet_resize" / "Imagenet_resize", n, 32)
    image_folder(root / "LSUN" / "test", n, 36)
    image_folder(root / "LSUN_resize" / "LSUN_resize", n, 32)


def textures(root: Path, n: int = 20) -> None:
    """``dtd/images/<class>/*.jpg`` with images of several sizes."""
    image_folder(root / "dtd" / "images", n, 64, classes=["banded", "zigzagged"])


def places365(root: Path, n: int = 20) -> None:
    image_folder(root / "val_256", n, 256)


def zip_folder(path: Path, n: int, classes: list[str] | None, size: int = 32, seed: int = 0) -> None:
    """A zip in ImageFolder layout (``<class>/<file>.png`` when labelled), like the catalog archives."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(n):
            name = f"{classes[i % len(classes)]}/{i:04d}.png" if classes else f"{i:05d}.png"
            buffer = io.BytesIO()
            Image.fromarray(_images(rng, 1, size)[0]).save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())


def tinyimages300k(root: Path, n: int = 50, seed: int = 0) -> None:
    """``300K_random_images.npy``: one uint8 array ``N x 32 x 32 x 3`` (the file pytorch-ood downloads)."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "300K_random_images.npy", _images(np.random.default_rng(seed), n))
