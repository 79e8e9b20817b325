"""Training with auxiliary outliers: the loop Outlier Exposure, ALOE and ATOM share.

Epochs over the ID training split; each step takes a batch of ID images and a batch of auxiliary
outliers (cycling through the epoch's outlier pool in a fresh permutation), random crop + flip on
both, one forward pass over the two, SGD with Nesterov momentum and weight decay, the learning
rate annealed per step on a cosine from ``lr`` to ``lr_min``, train mode. State is saved after
every epoch, so an interrupted training resumes. An epoch is one pass over the whole ID split: its
last batch is partial (391 steps for 50,000 images in batches of 128), as with the OE code's
DataLoader, which does not drop it. Data-parallel (``models/distributed.py``, under ``torchrun``):
every rank builds the same global batches, perturbs them (adversarial inputs are computed whole on
each rank), and trains on its slice of the ID and outlier batches, its loss weighted by its share
of the ID batch; the step equals one process's when the two batches split in the same proportions,
as they do when both split evenly (ALOE's and ATOM's PGD steps are not shared out).

A method using it (``class OE(OutlierTraining, Method)``) gives the loss and, where its paper
differs, overrides the hooks: :meth:`prepare` (before the optimiser exists: a new output,
re-initialised weights), :meth:`epoch_pool` (the auxiliary images an epoch draws from: ATOM's
mining) and :meth:`perturb` (adversarial inputs: ALOE, ATOM). Its ``Params`` has ``epochs``,
``lr``, ``lr_min``, ``momentum``, ``weight_decay``, ``batch_size`` and ``aux_batch_size``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from oodbench.api import TrainingContext
from oodbench.data.augment import random_crop_flip
from oodbench.data.batches import take, to_device
from oodbench.models.distributed import World
from oodbench.models.training import EpochState, RunningLoss


def cosine_annealing(total_steps: int, lr: float, lr_min: float):
    """LR factor: a cosine from 1 down to ``lr_min / lr`` over ``total_steps`` (the OE code's schedule)."""
    floor = lr_min / lr

    def factor(step: int) -> float:
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return factor


def reinitialise(model: torch.nn.Module) -> None:
    """Fresh weights for every layer that has ``reset_parameters`` (training from scratch)."""
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()


class OutlierTraining:
    """The shared loop (see the module docstring); mixed into a :class:`oodbench.api.Method`."""

    #: extra passes per step that :meth:`perturb` costs, for the plan's estimate (ALOE: its PGD steps)
    attack_passes: int = 0
    #: the loop trains data-parallel when the run has several processes (see the module docstring)
    distributed: bool = True

    def outlier_loss(self, logits_in: Tensor, targets: Tensor, logits_out: Tensor, num_classes: int) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must give its loss")

    def prepare(self, context: TrainingContext) -> dict:
        """Change the network before training (returns facts for the training summary)."""
        return {}

    def epoch_pool(self, context: TrainingContext, epoch: int, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        """Indices of the auxiliary images this epoch draws its outliers from, and facts to record."""
        return np.arange(len(context.aux_images)), {}

    def perturb(self, context: TrainingContext, x_in: Tensor, y: Tensor, x_out: Tensor,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The inputs of one step (adversarial ones for robust methods)."""
        return x_in, x_out

    def training_images(self, n_id: int, n_aux: int) -> int:
        p = self.params
        return p.epochs * (n_id + math.ceil(n_id / p.batch_size) * p.aux_batch_size) * (1 + self.attack_passes)

    def train(self, context: TrainingContext) -> dict:
        p = self.params
        world = World.current()
        facts = self.prepare(context)
        model = context.model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, nesterov=True, weight_decay=p.weight_decay)
        n = len(context.id_labels)
        steps = math.ceil(n / p.batch_size)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_annealing(p.epochs * steps, p.lr, p.lr_min))
        state = EpochState(context.scratch, context.device)
        start, extra = state.restore(model=model, optimizer=optimizer, schedule=schedule)
        labels = to_device(torch.as_tensor(context.id_labels, dtype=torch.long), context.device)
        losses, epochs = extra.get("losses", []), extra.get("epochs", [])
        forward = context.forward_for(world.wrap(model, context.device), p.epochs * steps)
        for epoch in range(start, p.epochs):
            generator = torch.Generator().manual_seed(context.seed * 7919 + epoch)
            pool, pool_facts = self.epoch_pool(context, epoch, generator)
            model.train()
            order = torch.randperm(n, generator=generator).numpy()
            aux_order = pool[torch.randperm(len(pool), generator=generator).numpy()]
            total = RunningLoss()
            bar = context.progress(range(steps), f"epoch {epoch + 1}/{p.epochs}", total=steps)
            for step in bar:
                index = np.sort(order[step * p.batch_size : (step + 1) * p.batch_size])
                aux_index = np.sort(aux_order[(step * p.aux_batch_size + np.arange(p.aux_batch_size)) % len(aux_order)])
                y = take(labels, index)
                x_in = random_crop_flip(context.pixels(context.id_images[index]), 4, True, generator)
                x_out = random_crop_flip(context.pixels(context.aux_images[aux_index]), 4, True, generator)
                x_in, x_out = self.perturb(context, x_in, y, x_out, generator)
                share = world.weight(len(world.shard(y)), len(y))
                x_in, y, x_out = world.shard(x_in), world.shard(y), world.shard(x_out)
                with context.precision():
                    logits = forward(torch.cat([x_in, x_out])).float()
                loss = self.outlier_loss(logits[: len(x_in)], y, logits[len(x_in):], context.num_classes)
                context.backward_step(loss * share, optimizer)
                schedule.step()
                total.add(loss, share)
                context.on_images(round((len(x_in) + len(x_out)) * (1 + self.attack_passes)))
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{total.mean(step + 1):.3f}")
            losses.append(world.mean(total.mean(steps)))
            epochs.append(pool_facts)
            if world.writer:
                state.save(epoch + 1, {"losses": losses, "epochs": epochs}, model=model, optimizer=optimizer, schedule=schedule)
        model.eval()
        return {"epochs": p.epochs, "loss_per_epoch": losses, "world_size": world.size, **facts,
                **({"per_epoch": epochs} if any(epochs) else {})}
