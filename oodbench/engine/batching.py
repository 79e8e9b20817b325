"""The inference batch size (extraction, methods that read images): measured, not a constant.

- On a GPU the limit is memory: one probe batch measures the memory a pass with input gradients
  takes per image (the heaviest inference pass, ODIN's), and the batch is the largest power of
  two that keeps such a pass within half of the free memory.
- On a CPU the limit is throughput: forward passes at batch sizes from 32 to 1024 images of 32x32
  pixels are timed (larger inputs: the same pixels in fewer images, 1 to 20 at 224x224, so the
  measurement holds at most 1024 small images' worth), and the batch is the smallest within 3% of
  the best images per second (a smaller batch holds less memory for the same speed).

Training batch sizes are part of each recipe and never change. The result is remembered per
backbone and device next to the throughput measurements, and ``--batch-size`` overrides it.
"""

from __future__ import annotations

import time

import torch

from oodbench.engine.device import Compute
from oodbench.engine.estimate import Throughput

SMALLEST, LARGEST = 32, 8192
CPU_SIZES = (32, 64, 128, 256, 512, 1024)
#: on a CPU, the smallest batch within this share of the best throughput
NEAR_BEST = 0.97


def _probe(model: torch.nn.Module, compute: Compute, batch: int, size: int, channels: int) -> torch.Tensor:
    pixels = torch.rand(batch, channels, size, size, device=compute.device)
    return pixels.contiguous(memory_format=torch.channels_last) if compute.channels_last else pixels


def _gpu_batch(model: torch.nn.Module, compute: Compute, size: int, channels: int) -> int:
    probe = 64
    torch.cuda.synchronize(compute.device)
    torch.cuda.reset_peak_memory_stats(compute.device)
    before = torch.cuda.memory_allocated(compute.device)
    pixels = _probe(model, compute, probe, size, channels).requires_grad_(True)
    with compute.autocast():
        model(pixels).float().logsumexp(dim=1).sum().backward()
    per_image = max(1, (torch.cuda.max_memory_allocated(compute.device) - before) // probe)
    free = torch.cuda.mem_get_info(compute.device)[0]
    fitting = max(SMALLEST, min(LARGEST, free // 2 // per_image))
    return 1 << (int(fitting).bit_length() - 1)


@torch.no_grad()
def _cpu_batch(model: torch.nn.Module, compute: Compute, size: int, channels: int) -> int:
    def rate(batch: int) -> float:
        pixels = _probe(model, compute, batch, size, channels)
        with compute.autocast():
            model(pixels)
            seconds = []
            for _ in range(3):  # the best of three: the machine's other work only ever slows a pass down
                started = time.perf_counter()
                model(pixels)
                seconds.append(time.perf_counter() - started)
        return batch / min(seconds)

    rates = {batch: rate(batch) for batch in sorted({max(1, min(b, b * 32 * 32 // (size * size))) for b in CPU_SIZES})}
    best = max(rates.values())
    return min(batch for batch, value in rates.items() if value >= NEAR_BEST * best)


def inference_batch_size(model: torch.nn.Module, backbone: str, size: int, channels: int, compute: Compute,
                         store: Throughput) -> int:
    """The measured inference batch size of ``model`` (a backbone's classifier) on this device."""
    key = store.key("batch", backbone)
    known = store.rate(key)
    if known is not None:
        return int(known)
    model = compute.prepare(model).eval()
    batch = _gpu_batch(model, compute, size, channels) if compute.device.type == "cuda" else _cpu_batch(model, compute, size, channels)
    store.set(key, batch)
    return batch
