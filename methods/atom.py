"""ATOM: Adversarial Training with informative Outlier Mining (Chen, Li, Wu, Liang & Jha, ECML 2021).

A (K+1)-way classifier: auxiliary outliers get the extra label K,

    L = CE(f(x_in), y) + CE(f(x_out), K)        (both over the K+1 outputs)

- **Outlier mining**, every epoch: the auxiliary pool is scored with the extra-class probability,
  sorted ascending, and the epoch's outliers are the slice that starts at quantile ``q = 0.125``
  and holds ``M = 2 x |ID train|`` images: the informative outliers, neither the easiest nor the
  ones most like ID data. When the pool is smaller than that (tin-aux has 8,500 images for
  50,000 ID images), ``q`` is kept and the slice is the largest the pool allows; its size is
  recorded with the training summary (``per_epoch``).
- **Adversarial outliers**: half of each outlier batch is perturbed toward ID by L-inf PGD (the
  training loss on label K goes up): eps 8/255, 5 steps of 2/255, random start, keeping the
  strongest step per sample (:func:`oodbench.attacks.pgd` with ``keep_best``).
- Detection: the outlier score is the softmax probability of the extra class; ID accuracy is
  taken over the first K logits.

The original trains a DenseNet from scratch for 100 epochs (batches of 64 ID + 128 outliers,
SGD lr 0.1, momentum 0.9, Nesterov, weight decay 1e-4, cosine schedule): the defaults, used by
the ``paper`` preset. ``quick`` and ``smoke`` fine-tune the given classifier with a new (K+1)-th
output instead (zero-initialised; ``from_scratch=False``, 2 / 1 epochs, lr 1e-3 annealed to
1e-6). *Choices* (unspecified): attacks and mining run in eval mode; the pool is the whole
auxiliary set every epoch (the original resamples a pool from 80 Million Tiny Images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs, TrainingContext
from oodbench.attacks import AttackSpec, pgd
from oodbench.models.outlier_training import OutlierTraining, reinitialise

REDUCED = {"from_scratch": False, "lr": 1e-3, "lr_min": 1e-6}


@dataclass(frozen=True)
class AtomParams:
    epochs: int = 100
    lr: float = 0.1
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 64
    aux_batch_size: int = 128
    #: where the mined slice starts in the pool sorted by extra-class probability
    quantile: float = 0.125
    #: size of the mined slice, as a multiple of the ID training split (M = 2 x |ID train|)
    pool_factor: float = 2.0
    #: share of each outlier batch that is PGD-perturbed toward ID
    adversarial_share: float = 0.5
    #: L-inf radius, steps and step size of the training attack (pixel units)
    eps: float = 8 / 255
    steps: int = 5
    step_size: float = 2 / 255
    #: train from scratch (the paper) instead of fine-tuning the given classifier with a new output
    from_scratch: bool = True


def mined_slice(outlier_probability: np.ndarray, quantile: float, size: int) -> tuple[int, np.ndarray]:
    """Pool indices sorted by ascending extra-class probability, from quantile ``quantile`` on, at
    most ``size`` of them (fewer when the pool ends first); and where the slice starts."""
    order = np.argsort(outlier_probability, kind="stable")
    start = int(quantile * len(order))
    return start, order[start : start + size]


class ATOM(OutlierTraining, Method):
    name = "atom"
    table_order = 240
    citation = "Chen, Li, Wu, Liang & Jha, ATOM: Robustifying Out-of-distribution Detection Using Outlier Mining, ECML PKDD 2021"
    summary = "(K+1)-way classifier trained on mined, half-adversarial auxiliary outliers; extra-class probability"
    Params = AtomParams
    reads = frozenset({Reads.ALL_LOGITS})
    attacked_through = "score"
    trains = True
    uses_aux = True
    default_aux = "tinyimages300k"
    preset_defaults = {"quick": {"epochs": 2, **REDUCED}, "smoke": {"epochs": 1, **REDUCED}}

    @property
    def attack_passes(self) -> float:
        p = self.params
        return p.steps * p.adversarial_share * p.aux_batch_size / (p.batch_size + p.aux_batch_size)

    def prepare(self, context: TrainingContext) -> dict:
        if self.params.from_scratch:
            reinitialise(context.model)
        context.model.add_outputs(1)
        return {"from_scratch": self.params.from_scratch, "outputs": context.model.num_outputs}

    @torch.no_grad()
    def epoch_pool(self, context: TrainingContext, epoch: int, generator: torch.Generator) -> tuple[np.ndarray, dict]:
        p, model = self.params, context.model.eval()
        probabilities = []
        for start in range(0, len(context.aux_images), 256):
            with context.precision():
                outputs = model(context.pixels(context.aux_images[start : start + 256])).float()
            probabilities.append(outputs.softmax(dim=1)[:, context.num_classes].cpu().numpy())
            context.on_images(len(outputs))
        begin, chosen = mined_slice(np.concatenate(probabilities), p.quantile, int(p.pool_factor * len(context.id_labels)))
        return chosen, {"pool": len(context.aux_images), "slice_start": begin, "mined": len(chosen)}

    def perturb(self, context: TrainingContext, x_in: Tensor, y: Tensor, x_out: Tensor,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
        p, model = self.params, context.model.eval()
        half = int(len(x_out) * p.adversarial_share)
        spec = AttackSpec("atom training", p.eps, p.steps, p.step_size, "ood")
        outlier_label = torch.full((half,), context.num_classes, device=x_out.device)
        attacked = pgd(lambda x: F.cross_entropy(model(x).float(), outlier_label, reduction="none"), x_out[:half], spec, True,
                       generator, context.precision, keep_best=True)
        model.train()
        return x_in, torch.cat([attacked, x_out[half:]])

    def outlier_loss(self, logits_in: Tensor, targets: Tensor, logits_out: Tensor, num_classes: int) -> Tensor:
        outlier_label = torch.full((len(logits_out),), num_classes, device=logits_out.device)
        return F.cross_entropy(logits_in, targets) + F.cross_entropy(logits_out, outlier_label)

    def score(self, data: ScoreInputs) -> Tensor:
        return data.all_logits.softmax(dim=1)[:, data.num_classes]

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return model(pixels).float().softmax(dim=1)[:, model.num_classes]

