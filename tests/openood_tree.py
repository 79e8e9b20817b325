"""Small copies of OpenOOD v1.5's data folder in its exact layout, for tests: every list of a benchmark
(``benchmark_imglist/<benchmark>/<list>.txt``, ``path label`` per line, -1 for OOD images) over the folders
of OpenOOD's archives (``images_classic/<archive>/...``, ``images_largescale/<archive>/...``), with a
few real image files per list. The lists and folders come from :mod:`oodbench.datasets.openood`, which
copies OpenOOD's own definitions, so a list the benchmark names and the tree lacks cannot go unnoticed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from oodbench.datasets.openood import BENCHMARKS, Benchmark

#: (width, height, grey) of an archive's images: roughly the real sets' sizes, kept small
SIZES = {"cifar10": (32, 32, False), "cifar100": (32, 32, False), "tin": (64, 64, False), "mnist": (28, 28, True),
         "svhn": (32, 32, False), "texture": (96, 80, False), "places365": (64, 64, False), "cifar10c": (32, 32, False),
         "imagenet_1k": (80, 60, False), "ssb_hard": (72, 72, False), "ninco": (64, 90, False), "inaturalist": (90, 64, False),
         "openimage_o": (100, 75, False), "imagenet_v2": (80, 60, False), "imagenet_c": (64, 64, False),
         "imagenet_r": (70, 90, False), "imagenet_es": (80, 60, False)}


def _image(path: Path, rng: np.random.Generator, size: tuple[int, int, bool], tint: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height, grey = size
    pixels = rng.integers(0, 256, (height, width) if grey else (height, width, 3), dtype=np.uint8)
    if tint is not None:  # a class a tiny network can learn: its colour
        pixels[..., tint % 3] = 255
    Image.fromarray(pixels).save(path, quality=90) if path.suffix == ".JPEG" else Image.fromarray(pixels).save(path)


def _write_list(root: Path, benchmark: str, list_name: str, image_dir: str, archive: str, labels: list[int],
                rng: np.random.Generator, largescale: bool) -> None:
    lines = []
    for i, label in enumerate(labels):
        folder = f"n{label:08d}/" if largescale and label >= 0 else ""
        name = f"{archive}/{list_name}/{folder}{archive}_{list_name}_{i}.{'JPEG' if largescale or archive == 'tin' else 'png'}"
        _image(root / image_dir / name, rng, SIZES[archive], label if label >= 0 else None)
        lines.append(f"{name} {label}")
    lists = root / "benchmark_imglist" / benchmark
    lists.mkdir(parents=True, exist_ok=True)
    (lists / f"{list_name}.txt").write_text("\n".join(lines) + "\n")


def make_openood_tree(root: Path, benchmark: str, classes: int = 4, train_per_class: int = 16, per_class: int = 3,
                      per_set: int = 8, seed: int = 0) -> Path:
    """The data folder of OpenOOD's ``benchmark`` with every list: ID ``train``/``val``/``test`` over the first
    ``classes`` classes, each near-, far- and validation OOD set, and each covariate-shifted ID set."""
    spec: Benchmark = next(b for b in BENCHMARKS if b.name == benchmark)
    rng = np.random.default_rng(seed)
    largescale = spec.image_dir == "images_largescale"
    for split, count in (("train", train_per_class), ("val", per_class), ("test", per_class)):
        labels = [label for label in range(classes) for _ in range(count)]
        _write_list(root, benchmark, f"{split}_{benchmark}", spec.image_dir, spec.archive, labels, rng, largescale)
    for ood in (*spec.near, *spec.far, spec.validation):
        _write_list(root, benchmark, ood.list_name, ood.image_dir, ood.archive, [-1] * per_set, rng, ood.image_dir == "images_largescale")
    for shifted in spec.csid:
        labels = [label for label in range(classes) for _ in range(per_class)]
        _write_list(root, benchmark, shifted.list_name, shifted.image_dir, shifted.archive, labels, rng, largescale)
    return root
