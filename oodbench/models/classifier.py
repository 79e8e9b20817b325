"""The classifier every stage works with: pixels in [0, 1] in, logits (and features) out."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from oodbench.api import Head


class ImageClassifier(nn.Module):
    """Wraps a backbone network with its input normalisation.

    Inputs are pixel tensors in ``[0, 1]``; normalisation ``(x - mean) / std`` happens inside, so
    input-space perturbations (ODIN, adversarial attacks) are expressed in pixel units.
    The network must provide ``features(x)`` (pooled penultimate features) and a linear ``fc``.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if not hasattr(net, "features") or not isinstance(getattr(net, "fc", None), nn.Linear):
            raise TypeError(f"{type(net).__name__} needs a features(x) method and a linear 'fc' layer")
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def num_classes(self) -> int:
        return self.net.fc.out_features

    @property
    def feature_dim(self) -> int:
        return self.net.fc.in_features

    def normalize(self, pixels: Tensor) -> Tensor:
        return (pixels - self.mean) / self.std

    def features(self, pixels: Tensor) -> Tensor:
        return self.net.features(self.normalize(pixels))

    def forward_with_features(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(pixels)
        return self.net.fc(features), features

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net.fc(self.features(pixels))

    def head(self) -> Head:
        return Head(weight=self.net.fc.weight.detach().float(), bias=self.net.fc.bias.detach().float())
