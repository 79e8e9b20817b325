"""The cross-entropy classifier recipe (``oodbench train`` and backbones trained for a run).

SGD with Nesterov momentum, weight decay, a cosine learning-rate schedule stepped every batch
(after an optional linear warm-up), random crop with zero padding (or, for ImageNet recipes, a
random resized crop) and horizontal flips: the recipe of the Wide ResNet baselines of the Outlier
Exposure and Energy papers and of OpenOOD's ResNet-18s, with the epoch count as the knob that makes
it CPU-sized.

Training is resumable: the state after every epoch is kept in a scratch directory, and a rerun
after an interruption continues from the last finished epoch.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from oodbench.api import TrainingRecipe
from oodbench.data.augment import random_crop_flip, random_resized_crop
from oodbench.data.batches import resident, take, to_device, to_pixels
from oodbench.engine.device import CompiledModule, Compute
from oodbench.faults import reached
from oodbench.models.classifier import ImageClassifier
from oodbench.models.distributed import World
from oodbench.progress import progress


def cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1, then cosine annealing to 0 (Loshchilov & Hutter 2017)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_ = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))

    return factor


#: Trainings shorter than this many steps run eagerly: compiling costs about half a minute.
COMPILE_MIN_STEPS = 2000


def steps_per_epoch(count: int, recipe: TrainingRecipe) -> int:
    return count // min(recipe.batch_size, count)


def uses_compile(compute: Compute, count: int, recipe: TrainingRecipe) -> bool:
    """Whether a training of ``count`` images with ``recipe`` runs through ``torch.compile``."""
    return compute.compile and recipe.epochs * steps_per_epoch(count, recipe) >= COMPILE_MIN_STEPS


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """Zero the gradients, back-propagate ``loss`` (scaled when training in float16), step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def cross_entropy_step(forward: Callable, optimizer: torch.optim.Optimizer, pixels: torch.Tensor, target: torch.Tensor,
                       compute: Compute, scaler: torch.amp.GradScaler, weight: float = 1.0) -> torch.Tensor:
    """One step on the cross-entropy of ``forward(pixels)`` (under the compute's autocast), back-propagated
    times ``weight`` (a rank's share of a data-parallel batch); the loss."""
    with compute.autocast():
        loss = F.cross_entropy(forward(pixels).float(), target)
    optimizer_step(loss * weight if weight != 1.0 else loss, optimizer, scaler)
    return loss


class RunningLoss:
    """An epoch's loss, summed on the device: reading it (for the progress bar every few steps, and
    at the epoch's end) is then the only time the host waits for the device."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0

    def add(self, loss: torch.Tensor, weight: float = 1.0) -> None:
        self.total = self.total + loss.detach().float() * weight

    def mean(self, steps: int) -> float:
        """The mean over ``steps`` steps (0 steps: 0)."""
        return float(self.total) / max(1, steps)


class EpochState:
    """Training state kept between epochs in a scratch directory, so an interrupted stage resumes.

    ``save(epoch, ...)`` writes the state dicts of the given objects (model, optimiser, schedule,
    ...) atomically after an epoch; ``restore(...)`` loads them back into the same objects and
    returns the number of finished epochs and the extra values saved with them.
    """

    def __init__(self, scratch: Path, device: torch.device) -> None:
        scratch.mkdir(parents=True, exist_ok=True)
        self.path = scratch / "state.pt"
        self.device = device

    def restore(self, **objects) -> tuple[int, dict]:
        if not self.path.is_file():
            return 0, {}
        state = torch.load(self.path, map_location=self.device, weights_only=False)
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
        return state["epoch"], state["extra"]

    def save(self, epoch: int, extra: dict | None = None, **objects) -> None:
        tmp = self.path.with_suffix(".tmp")
        torch.save({"epoch": epoch, "extra": extra or {}, "objects": {k: o.state_dict() for k, o in objects.items()}}, tmp)
        os.replace(tmp, self.path)
        reached("epoch")


def train_classifier(
    model: ImageClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    recipe: TrainingRecipe,
    seed: int,
    compute: Compute,
    scratch: Path,
    desc: str,
    on_images: Callable[[int], None] | None = None,
) -> dict:
    """Train ``model`` in place on uint8 ``images`` (``N x H x W x C``) with cross-entropy.

    Returns a summary (epochs, final training loss, seconds spent in this call, the number of
    processes). The last partial batch of each epoch is dropped, as in the reference recipes. In a
    process group (``models/distributed.py``) each process trains on its slice of every global batch.
    """
    world = World.current()
    torch.manual_seed(seed)
    n = images.shape[0]
    batch_size = min(recipe.batch_size, n)
    steps = steps_per_epoch(n, recipe)
    total_steps = recipe.epochs * steps
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(total_steps, int(recipe.warmup_epochs * steps))
    )
    state = EpochState(scratch, compute.device)
    start_epoch, extra = state.restore(model=model, optimizer=optimizer, schedule=schedule)
    last_loss = extra.get("loss", float("nan"))
    labels_t = to_device(torch.as_tensor(labels, dtype=torch.long), compute.device)
    source = resident(images, compute.device)
    forward = CompiledModule(world.wrap(model, compute.device), uses_compile(compute, n, recipe))
    scaler = compute.grad_scaler()
    started = time.perf_counter()
    for epoch in range(start_epoch, recipe.epochs):
        model.train()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=generator)
        running = RunningLoss()
        bar = progress(range(steps), desc=f"{desc} epoch {epoch + 1}/{recipe.epochs}", unit="batch")
        for step in bar:
            index = np.sort(order[step * batch_size : (step + 1) * batch_size].numpy())
            pixels = to_pixels(take(source, index), compute.device, compute.channels_last)
            target = take(labels_t, index)
            if recipe.random_resized_crop:
                pixels = random_resized_crop(pixels, generator)
            pixels = random_crop_flip(pixels, recipe.crop_padding, recipe.flip, generator)
            local = world.shard(target)
            loss = cross_entropy_step(forward, optimizer, world.shard(pixels), local, compute, scaler,
                                      world.weight(len(local), len(target)))
            schedule.step()
            running.add(loss, world.weight(len(local), len(target)))
            if on_images is not None:
                on_images(len(local))
            if step % 20 == 0:
                bar.set_postfix(loss=f"{running.mean(step + 1):.3f}")
        last_loss = world.mean(running.mean(steps))
        if world.writer:
            state.save(epoch + 1, {"loss": last_loss}, model=model, optimizer=optimizer, schedule=schedule)
    model.eval()
    return {"epochs": recipe.epochs, "resumed_from_epoch": start_epoch, "final_train_loss": last_loss,
            "train_seconds": time.perf_counter() - started, "train_images": n, "world_size": world.size}
