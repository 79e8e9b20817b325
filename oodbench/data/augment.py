"""Training augmentation on whole batches of pixel tensors: random crop with zero padding, flip.

Vectorised: one gather for the whole batch on its device, no per-sample Python loop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oodbench.data.batches import to_device


def random_crop_flip(pixels: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied per sample to ``B x C x H x W``.

    Randomness comes from ``generator`` (on the CPU), so a seeded run is reproducible; the result
    keeps the input's memory format.
    """
    b, c, h, w = pixels.shape
    channels_last = pixels.is_contiguous(memory_format=torch.channels_last) and not pixels.is_contiguous()
    if padding > 0:
        padded = F.pad(pixels, (padding, padding, padding, padding))
        dy, dx = to_device(torch.randint(0, 2 * padding + 1, (2, b), generator=generator), pixels.device)
        rows = (dy.view(b, 1) + torch.arange(h, device=pixels.device)).view(b, 1, h, 1)
        cols = (dx.view(b, 1) + torch.arange(w, device=pixels.device)).view(b, 1, 1, w)
        batch = torch.arange(b, device=pixels.device).view(b, 1, 1, 1)
        channel = torch.arange(c, device=pixels.device).view(1, c, 1, 1)
        pixels = padded[batch, channel, rows, cols]
    if flip:
        mask = to_device(torch.rand(b, generator=generator) < 0.5, pixels.device)
        pixels = torch.where(mask.view(-1, 1, 1, 1), pixels.flip(3), pixels)
    return pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels
