"""Shared by the activation-shaping detectors (ReAct, SCALE, ASH, RankFeat): penultimate features as the
``B x D x 1 x 1`` maps pytorch-ood's shaping functions take, and the rest of the network that turns shaped
maps back into logits.

Shaping acts on the pooled penultimate features by default, as OpenOOD v1.5 applies it (its
``forward_threshold`` views the pooled features as ``D x 1 x 1`` maps), or on the last feature map before
pooling where a method reads it; the energy of the resulting logits is the outlier score.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from oodbench.api import Head


def as_maps(features: Tensor) -> Tensor:
    """``B x D`` features as ``B x D x 1 x 1`` maps, float32 (a view when they already are)."""
    return features.float()[:, :, None, None]


def head_on_maps(head: Head) -> Callable[[Tensor], Tensor]:
    """The rest of the network on (shaped) ``B x D x H x W`` maps: global average pooling, then the final linear
    layer (for the ``D x 1 x 1`` view of pooled features the pooling changes nothing)."""
    return lambda maps: F.linear(maps.mean(dim=(2, 3)), head.weight, head.bias)
