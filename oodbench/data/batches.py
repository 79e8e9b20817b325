"""Batches of cached uint8 images as float pixel tensors in [0, 1] on a device.

On CUDA the device never waits on the host when it can be avoided: a split that takes under a
quarter of the free GPU memory is copied there once as uint8 (:func:`resident`) and batches are
sliced on the device; otherwise host batches go through pinned memory with non-blocking copies
(:func:`to_device`, also for indices, labels and random draws made on the host). On the CPU
nothing is copied.
"""

from __future__ import annotations

from typing import Iterator, Union

import numpy as np
import torch

#: uint8 ``N x H x W x C`` images: a host array, or a tensor already on the compute device
Images = Union[np.ndarray, torch.Tensor]


def resident(images: np.ndarray, device: torch.device) -> Images:
    """``images`` on ``device`` when it is a GPU with room for them (a quarter of its free memory), else as they are."""
    if device.type != "cuda" or images.nbytes > torch.cuda.mem_get_info(device)[0] // 4:
        return images
    return torch.from_numpy(np.ascontiguousarray(images)).to(device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``. From the host to a GPU it goes through pinned memory without blocking:
    a plain copy from pageable memory would make the host wait for all queued GPU work first."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def take(images: Images, index: np.ndarray) -> Images:
    """The rows ``index`` of host or device images (or labels)."""
    if isinstance(images, torch.Tensor):
        return images[to_device(torch.from_numpy(np.asarray(index)), images.device)]
    return images[index]


def to_pixels(images: Images, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``B x H x W x C`` uint8 -> ``B x C x H x W`` float in [0, 1] (channels-last memory when asked)."""
    batch = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.require(images, requirements=["C", "W"]))
    batch = to_device(batch, device).permute(0, 3, 1, 2).float().div_(255.0)
    return batch.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def pixel_batches(images: np.ndarray, batch_size: int, device: torch.device, channels_last: bool) -> Iterator[torch.Tensor]:
    """Consecutive batches of ``images`` in their stored order."""
    source = resident(images, device)
    for start in range(0, images.shape[0], batch_size):
        yield to_pixels(source[start : start + batch_size], device, channels_last)
