"""Shared by the activation-shaping detectors (ReAct, SCALE, ASH): penultimate features as the ``B x D x 1 x 1``
maps pytorch-ood's shaping functions take, and the head that turns shaped maps back into logits.

Shaping acts on the pooled penultimate features here, as OpenOOD v1.5 applies it (its ``forward_threshold``
views the pooled features as ``D x 1 x 1`` maps); the energy of the resulting logits is the outlier score.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from oodbench.api import Head


def as_maps(features: Tensor) -> Tensor:
    """``B x D`` features as ``B x D x 1 x 1`` maps: a float32 copy (pytorch-ood's shaping works in place)."""
    return features.to(torch.float32, copy=True)[:, :, None, None]


def head_on_maps(head: Head) -> Callable[[Tensor], Tensor]:
    """The final linear layer applied to (shaped) ``B x D x 1 x 1`` maps."""
    return lambda maps: F.linear(maps.flatten(1), head.weight, head.bias)
