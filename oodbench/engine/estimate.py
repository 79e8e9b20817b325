"""Measured throughput, and the cost estimates ``oodbench plan`` derives from it.

Every stage that computes something records how many items it processed in how many seconds
under a *rate key* that names the kind of work, the backbone or method, and the device
(``forward/wrn-16-2/cpu-bf16``); the store keeps a running average per key in
``<cache>/throughput.json``. A task's estimated cost is its item count divided by the rate of its
key. For a backbone never run on this device, :func:`calibrate` measures forward and training
images per second with a few batches of random pixels (seconds), so the very first plan has
estimates for the stages that dominate a run; a stage without any measurement (a method's fit
that was never run here) is reported as unknown, never guessed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from oodbench.models.training import cross_entropy_step

#: weight of a new measurement in the running average
SMOOTHING = 0.5


@dataclass(frozen=True)
class Work:
    """What a task processes: ``items`` (images or samples; None until its data is known) at the
    throughput of ``rate``, or of ``fallback`` while ``rate`` was never measured here."""

    rate: str
    items: int | None
    fallback: str | None = None
    #: passes over the data the items count (a training's epochs)
    passes: int = 1


def device_label(compute) -> str:
    """The device part of a rate key: 'cpu-bf16', 'cuda-NVIDIA H100 80GB HBM3-bf16', ..."""
    device = compute.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" and torch.cuda.is_available() else device.type
    return f"{name}-{compute.precision}"


class Throughput:
    """Items per second per rate key (and measured settings such as the inference batch size),
    persisted next to the artifact cache."""

    def __init__(self, path: Path, device: str) -> None:
        self.path = path
        self.device = device
        try:
            self.rates: dict[str, float] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.rates = {}

    def key(self, kind: str, subject: str) -> str:
        return f"{kind}/{subject}/{self.device}"

    def rate(self, key: str) -> float | None:
        return self.rates.get(key)

    def record(self, key: str, items: int, seconds: float) -> None:
        """Fold one measurement (``items`` in ``seconds``) into the running average of ``key``."""
        if items <= 0 or seconds <= 0:
            return
        rate = items / seconds
        previous = self.rates.get(key)
        self.set(key, rate if previous is None else SMOOTHING * rate + (1 - SMOOTHING) * previous)

    def set(self, key: str, value: float) -> None:
        """Remember a measured value (a rate, or a measured setting such as a batch size)."""
        self.rates[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.rates, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def seconds(self, work: Work | None) -> float | None:
        """Estimated seconds of ``work``; 0 for none, None when the rate or the item count is unknown."""
        if work is None or work.items == 0:
            return 0.0
        rate = self.rate(work.rate) or (self.rate(work.fallback) if work.fallback else None)
        if rate is None or work.items is None:
            return None
        return work.items / rate


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


#: the least share of its threads' CPU time a calibration on a CPU may get: below it, other work on
#: the machine slowed it down (WRN-16-2 here: 0.99 idle; 0.50, and 4x slower, next to two busy
#: processes) and its rates would make every estimate too long
BUSY_SHARE = 0.8


def _timed(step: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Seconds per call of ``step``, and the share of its threads' CPU time this process got meanwhile."""
    step()  # warm-up: allocator, kernels, lazy initialisation
    _synchronize()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        step()
    _synchronize()
    wall = time.perf_counter() - started
    return wall / repeats, (time.process_time() - cpu) / (wall * torch.get_num_threads())


#: pixels of a calibration batch: 128 images of 32x32x3 (a 224-pixel network is timed on 4 images, not 128)
CALIBRATION_PIXELS = 128 * 32 * 32 * 3


def calibrate(throughput: Throughput, backbone: str, model: torch.nn.Module, size: int, channels: int, num_classes: int,
              compute, batch_size: int | None = None, repeats: int = 2, train: bool = True) -> str | None:
    """Measure forward (and with ``train``, training) images per second of ``model`` on random pixels, where
    unknown, on batches of :data:`CALIBRATION_PIXELS` pixels (at least 4 images) unless ``batch_size`` is given.
    The measurements are kept as the *bare* rates of this network here (``bare-forward``, ``bare-train``: no data
    loading, no augmentation, eager), which a run shows beside its stages' own, and start the stages' rates where
    no run measured them yet. A measurement on a CPU that got less than :data:`BUSY_SHARE` of its threads' time is
    not kept: returns why (None when the rates are known or recorded)."""
    forward_key, train_key = throughput.key("forward", backbone), throughput.key("train", backbone)
    bare_forward, bare_train = throughput.key("bare-forward", backbone), throughput.key("bare-train", backbone)
    if throughput.rate(bare_forward) is not None and (not train or throughput.rate(bare_train) is not None):
        return None
    batch_size = batch_size or max(4, CALIBRATION_PIXELS // (size * size * channels))
    model = compute.prepare(model)
    pixels = torch.rand(batch_size, channels, size, size, device=compute.device)
    if compute.channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    target = torch.randint(num_classes, (batch_size,), device=compute.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    @torch.no_grad()
    def forward() -> None:
        with compute.autocast():
            model(pixels)

    scaler = compute.grad_scaler()

    def step() -> None:
        cross_entropy_step(model, optimizer, pixels, target, compute, scaler)

    model.eval()
    forward_seconds, share = _timed(forward, repeats)
    if train:
        model.train()
        train_seconds, train_share = _timed(step, repeats)
        share = min(share, train_share)
    if compute.device.type == "cpu" and share < BUSY_SHARE:
        return (f"{backbone} not calibrated: the machine is busy (the measurement got {share:.0%} of its "
                f"{torch.get_num_threads()} threads' CPU time); its stages have no estimate until a run, or a plan "
                "on an idle machine, measures them")
    measured = {forward_key: (bare_forward, forward_seconds), **({train_key: (bare_train, train_seconds)} if train else {})}
    for key, (bare, seconds) in measured.items():
        throughput.set(bare, batch_size / seconds)
        if throughput.rate(key) is None:
            throughput.record(key, batch_size, seconds)
    return None
