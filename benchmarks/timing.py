"""Timing for the benchmarks: rates measured between device syncs, after a warm-up."""

from __future__ import annotations

import time
from typing import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(step: Callable[[], object], images: int, device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Images per second of ``step`` (``images`` each), after warm-up, timed between device syncs."""
    for _ in range(warmup):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    synchronize(device)
    return images * repeats / (time.perf_counter() - started)
