"""Shared by detectors that hand pytorch-ood the classifier's last layer as a module: :class:`~oodbench.api.Head`
as an ``nn.Linear``."""

from __future__ import annotations

import torch
from torch import nn

from oodbench.api import Head


def linear(head: Head) -> nn.Linear:
    """An ``nn.Linear`` holding ``head``'s weight and bias (float32, on their device, no gradient)."""
    layer = nn.Linear(head.weight.shape[1], head.weight.shape[0], device=head.weight.device)
    with torch.no_grad():
        layer.weight.copy_(head.weight)
        layer.bias.copy_(head.bias)
    return layer.requires_grad_(False)
