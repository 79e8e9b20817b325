"""Outlier Exposure (Hendrycks, Mazeika & Dietterich, ICLR 2019): fine-tune with auxiliary outliers.

Loss (each term averaged over its own sub-batch, as in the original code; pytorch-ood's
``OutlierExposureLoss`` averages over the combined batch instead, so it is not used here):

    L = CE(f(x_in), y) + 0.5 * mean_out[ -( mean_c f_c(x_out) - logsumexp_c f_c(x_out) ) ]

:func:`outlier_exposure_loss`. Fine-tuning as in the original CIFAR ``oe_tune`` runs: 10 epochs,
SGD (lr 1e-3, momentum 0.9, Nesterov, weight decay 5e-4) with the learning rate annealed per
step on a cosine from 1e-3 to 1e-6, 128 ID and 256 auxiliary images in one forward pass, train
mode, RandomCrop(32, padding 4) + horizontal flip on both. An epoch is one pass over the ID
training split (the last partial batch dropped); auxiliary batches cycle through a fresh
permutation of the auxiliary set. Detection: maximum softmax probability.

Auxiliary data: ``--aux NAME``, any dataset of role ``aux``; without ``--aux``, the usual
replacement of the withdrawn 80 Million Tiny Images the original used: the 300K Random Images
(``tinyimages300k``, downloaded on first use). The ``quick`` preset fine-tunes 2 epochs and
``smoke`` 1 instead of 10.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_ood.detector import MaxSoftmax
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs, TrainingContext
from oodbench.data.augment import random_crop_flip
from oodbench.models.training import EpochState


@dataclass(frozen=True)
class OeParams:
    epochs: int = 10
    lr: float = 1e-3
    lr_min: float = 1e-6
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    aux_batch_size: int = 256
    #: weight of the outlier term (lambda)
    weight: float = 0.5


def outlier_exposure_loss(logits_in: Tensor, targets: Tensor, logits_out: Tensor, weight: float) -> Tensor:
    """``CE(in) + weight * mean_out[-(mean_c f_c - logsumexp_c f_c)]``, each mean over its own sub-batch."""
    uniform_term = -(logits_out.mean(dim=1) - torch.logsumexp(logits_out, dim=1))
    return F.cross_entropy(logits_in, targets) + weight * uniform_term.mean()


def cosine_annealing(total_steps: int, lr: float, lr_min: float):
    """LR factor: a cosine from 1 down to ``lr_min / lr`` over ``total_steps`` (the OE code's schedule)."""
    floor = lr_min / lr

    def factor(step: int) -> float:
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return factor


class OutlierExposure(Method):
    name = "oe"
    citation = "Hendrycks, Mazeika & Dietterich, Deep Anomaly Detection with Outlier Exposure, ICLR 2019"
    summary = "fine-tune toward uniform posteriors on auxiliary outliers; MSP"
    Params = OeParams
    reads = frozenset({Reads.LOGITS})
    attacked_through = "score"
    trains = True
    uses_aux = True
    default_aux = "tinyimages300k"
    #: reduced settings, visible in every record's parameters: the CPU preset fine-tunes 2 epochs, smoke 1
    preset_defaults = {"quick": {"epochs": 2}, "smoke": {"epochs": 1}}

    def training_images(self, n_id: int, n_aux: int) -> int:
        p = self.params
        return p.epochs * (n_id // p.batch_size) * (p.batch_size + p.aux_batch_size)

    def train(self, context: TrainingContext) -> dict:
        p = self.params
        model = context.model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, nesterov=True, weight_decay=p.weight_decay)
        n, n_aux = len(context.id_labels), len(context.aux_images)
        steps = n // p.batch_size
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_annealing(p.epochs * steps, p.lr, p.lr_min))
        state = EpochState(context.scratch, context.device)
        start, extra = state.restore(model=model, optimizer=optimizer, schedule=schedule)
        labels = torch.as_tensor(context.id_labels, dtype=torch.long)
        losses = extra.get("losses", [])
        for epoch in range(start, p.epochs):
            generator = torch.Generator().manual_seed(context.seed * 7919 + epoch)
            order = torch.randperm(n, generator=generator).numpy()
            aux_order = torch.randperm(n_aux, generator=generator).numpy()
            total = 0.0
            bar = context.progress(range(steps), f"epoch {epoch + 1}/{p.epochs}", total=steps)
            for step in bar:
                index = np.sort(order[step * p.batch_size : (step + 1) * p.batch_size])
                aux_index = np.sort(aux_order[(step * p.aux_batch_size + np.arange(p.aux_batch_size)) % n_aux])
                x_in = random_crop_flip(context.pixels(context.id_images[index]), 4, True, generator)
                x_out = random_crop_flip(context.pixels(context.aux_images[aux_index]), 4, True, generator)
                with context.precision():
                    logits = model(torch.cat([x_in, x_out])).float()
                loss = outlier_exposure_loss(logits[: len(x_in)], labels[index].to(context.device), logits[len(x_in):], p.weight)
                context.backward_step(loss, optimizer)
                schedule.step()
                total += loss.item()
                context.on_images(len(x_in) + len(x_out))
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{total / (step + 1):.3f}")
            losses.append(total / max(1, steps))
            state.save(epoch + 1, {"losses": losses}, model=model, optimizer=optimizer, schedule=schedule)
        model.eval()
        return {"epochs": p.epochs, "loss_per_epoch": losses}

    def score(self, data: ScoreInputs) -> Tensor:
        return MaxSoftmax.score(data.logits)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return MaxSoftmax.score(model.class_logits(pixels).float())
