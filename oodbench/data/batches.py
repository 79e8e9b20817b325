"""Batches of cached uint8 images as float pixel tensors in [0, 1] on a device."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


def to_pixels(images: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``B x H x W x C`` uint8 -> ``B x C x H x W`` float in [0, 1] (channels-last memory when asked)."""
    batch = torch.from_numpy(np.require(images, requirements=['C', 'W'])).to(device, non_blocking=True)
    batch = batch.permute(0, 3, 1, 2).float().div_(255.0)
    return batch.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def pixel_batches(
    images: np.ndarray, batch_size: int, device: torch.device, channels_last: bool
) -> Iterator[torch.Tensor]:
    """Consecutive batches of ``images`` in their stored order."""
    for start in range(0, images.shape[0], batch_size):
        yield to_pixels(images[start : start + batch_size], device, channels_last)
