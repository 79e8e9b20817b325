"""The classifier every stage works with: pixels in [0, 1] in, logits (and features) out."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from oodbench.api import Head, Reduction


class ImageClassifier(nn.Module):
    """Wraps a backbone network with its input normalisation.

    Inputs are pixel tensors in ``[0, 1]``; normalisation ``(x - mean) / std`` happens inside, so
    input-space perturbations (ODIN, adversarial attacks) are expressed in pixel units.
    The network must provide ``features(x)`` (pooled penultimate features) and a linear ``fc``.

    The final linear layer always runs in float32, also under bfloat16 / float16 autocast: logits
    rounded to 8 bits of mantissa tie and shift the scores of every logit-reading method (measured
    on the CPU: up to 0.003 AUROC against float32), at the cost of one small matrix product.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], layers: Mapping[str, str] | None = None) -> None:
        super().__init__()
        if not hasattr(net, "features") or not isinstance(getattr(net, "fc", None), nn.Linear):
            raise TypeError(f"{type(net).__name__} needs a features(x) method and a linear 'fc' layer")
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        #: the ID classes are the first ``num_classes`` outputs; a method may add outputs after them
        self.num_classes = net.fc.out_features
        #: the intermediate layers methods may read: name -> dotted path of the submodule of ``net`` (:attr:`BackboneSpec.layers`)
        self.layer_paths = dict(layers or {})

    @property
    def num_outputs(self) -> int:
        """Outputs of the final layer: the ID classes, then any a method added (e.g. ATOM's outlier class)."""
        return self.net.fc.out_features

    def add_outputs(self, extra: int) -> None:
        """Widen the final layer by ``extra`` outputs after the existing ones (weights kept, new rows zero)."""
        old = self.net.fc
        new = nn.Linear(old.in_features, old.out_features + extra).to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.zero_()
            new.bias.zero_()
            new.weight[: old.out_features] = old.weight
            new.bias[: old.out_features] = old.bias
        self.net.fc = new

    @property
    def feature_dim(self) -> int:
        return self.net.fc.in_features

    def normalize(self, pixels: Tensor) -> Tensor:
        return (pixels - self.mean) / self.std

    def features(self, pixels: Tensor) -> Tensor:
        return self.net.features(self.normalize(pixels))

    def logits(self, features: Tensor) -> Tensor:
        """The final layer on ``features``, in float32 whatever the autocast."""
        with torch.autocast(features.device.type, enabled=False):
            return self.net.fc(features.float())

    def forward_with_features(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(pixels)
        return self.logits(features), features

    def forward(self, pixels: Tensor) -> Tensor:
        return self.logits(self.features(pixels))

    def forward_with_layers(self, pixels: Tensor, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """The logits and the outputs of the named intermediate layers (:attr:`layer_paths`) on ``pixels``, the outputs
        as they are (not reduced) and in the graph: for gradients with respect to them, or in input space through them."""
        from oodbench.models.layers import captured

        with captured(self.net, self.layer_paths, [(name, Reduction.MAP) for name in names], keep_graph=True) as values:
            logits = self(pixels)
        return logits, {name: values[f"{name}:{Reduction.MAP.value}"] for name in names}

    def class_logits(self, pixels: Tensor) -> Tensor:
        """The logits of the ID classes only (the first ``num_classes`` outputs)."""
        return self(pixels)[:, : self.num_classes]

    def head(self) -> Head:
        """The ID classifier: a float32 copy of the rows of the final layer that belong to the ID classes."""
        k = self.num_classes
        return Head(weight=self.net.fc.weight[:k].detach().float().clone(), bias=self.net.fc.bias[:k].detach().float().clone())
