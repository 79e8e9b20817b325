"""Training augmentation on whole batches of pixel tensors: random crop with zero padding, flip."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(pixels: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied per sample to ``B x C x H x W``.

    Randomness comes from ``generator`` (on the CPU), so a seeded run is reproducible.
    """
    b, _, h, w = pixels.shape
    if padding > 0:
        padded = F.pad(pixels, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).tolist()
        pixels = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(zip(*offsets, strict=True))])
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(pixels.device)
        pixels = torch.where(mask.view(-1, 1, 1, 1), pixels.flip(3), pixels)
    return pixels
