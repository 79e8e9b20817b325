"""Synthetic noise OOD sets, generated at the backbone's input format (pytorch-ood noise datasets).

- ``gaussian``: pixels ~ N(128, 128^2) clipped to [0, 255] (:class:`pytorch_ood.dataset.img.GaussianNoise`)
- ``uniform``: pixels ~ U[0, 255] (:class:`pytorch_ood.dataset.img.UniformNoise`)

10,000 images each (the size of the ODIN OOD sets), from a fixed seed, so every run sees the
same images. The dataset draws image after image from one generator; materialisation takes them in
that order, a chunk at a time, so a split at 224 pixels (1.5 GB) never sits in memory whole.
"""

from __future__ import annotations

import numpy as np
import pytorch_ood
from pytorch_ood.dataset.img import GaussianNoise, UniformNoise

from oodbench.api import DatasetSpec
from oodbench.data.source import ImageFormat, ImageSet, Source, SourceContext

NOISE_COUNT = 10_000


class NoiseSource(Source):
    """Images drawn from a pytorch-ood noise dataset, in the requested format."""

    def __init__(self, kind: str, count: int, seed: int) -> None:
        self.kind = kind
        self.count = count
        self.seed = seed

    def identity(self, ctx: SourceContext) -> dict:
        return {"kind": f"noise-{self.kind}", "count": self.count, "seed": self.seed, "pytorch_ood": pytorch_ood.__version__}

    def read(self, ctx: SourceContext, fmt: ImageFormat) -> ImageSet:
        size = (fmt.size, fmt.size, fmt.channels)
        cls = GaussianNoise if self.kind == "gaussian" else UniformNoise
        dataset = cls(length=self.count, size=size, seed=self.seed)
        drawn = iter(range(self.count))

        def load(index: int) -> np.ndarray:
            if index != next(drawn):
                raise RuntimeError(f"{self.kind} noise images are drawn in order; item {index} was asked out of turn")
            return np.asarray(dataset[index][0]).reshape(size)

        return ImageSet(labels=np.full(self.count, -1, dtype=np.int64), load=load, sequential=True)

    def describe(self) -> str:
        return f"{self.kind} noise, {self.count} images, seed {self.seed}"


GAUSSIAN = DatasetSpec(
    name="gaussian",
    role="ood",
    splits={"test": NoiseSource("gaussian", NOISE_COUNT, seed=0)},
    description="Gaussian noise images, N(128, 128^2) per pixel, clipped (synthetic far-OOD)",
)

UNIFORM = DatasetSpec(
    name="uniform",
    role="ood",
    splits={"test": NoiseSource("uniform", NOISE_COUNT, seed=1)},
    description="uniform noise images, U[0, 255] per pixel (synthetic far-OOD)",
)
