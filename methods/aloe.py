"""ALOE: Adversarial Learning with inlier and Outlier Exposure (Chen, Li, Wu, Liang & Jha,
"Robust Out-of-distribution Detection for Neural Networks", arXiv 2003.09711).

Outlier Exposure's objective on adversarial inputs:

    L = CE(f(x~_in), y) + 0.5 * L_OE(f(x~_out))

where ``x~_in`` maximises the cross-entropy of its label and ``x~_out`` maximises the uniform
term of OE (:func:`oodbench.methods.oe.uniform_term`), each found by L-inf PGD in [0, 1] pixel
space: eps 1/255, 2 steps of 1/255, random start (:func:`oodbench.attacks.pgd`). The original
trains a DenseNet-BC from scratch for 100 epochs, batches of 64 ID + 128 outliers, SGD (lr 0.1,
momentum 0.9, Nesterov, weight decay 1e-4) with a cosine schedule: the defaults here, used by the
``paper`` preset. The ``quick`` and ``smoke`` presets fine-tune the given classifier instead (a
reduced setting every record shows: ``from_scratch=False``, 2 epochs / 1 epoch, lr 1e-3 annealed
to 1e-6). *Choice* (unspecified): the attacks are computed with the network in eval mode, so
adversarial batches do not move the BatchNorm statistics; the update itself is in train mode.
Detection: maximum softmax probability (its own score under attack, too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from oodbench.api import TrainingContext
from oodbench.attacks import AttackSpec, pgd
from oodbench.methods.oe import OeParams, OutlierExposure, uniform_term
from oodbench.models.outlier_training import reinitialise

REDUCED = {"from_scratch": False, "lr": 1e-3, "lr_min": 1e-6}


@dataclass(frozen=True)
class AloeParams(OeParams):
    epochs: int = 100
    lr: float = 0.1
    lr_min: float = 0.0
    weight_decay: float = 1e-4
    batch_size: int = 64
    aux_batch_size: int = 128
    #: weight of the outlier term (beta)
    weight: float = 0.5
    #: L-inf radius, steps and step size of the training attack (pixel units)
    eps: float = 1 / 255
    steps: int = 2
    step_size: float = 1 / 255
    #: train from scratch (the paper) instead of fine-tuning the given classifier
    from_scratch: bool = True


class ALOE(OutlierExposure):
    name = "aloe"
    table_order = 230
    citation = "Chen, Li, Wu, Liang & Jha, Robust Out-of-distribution Detection for Neural Networks, arXiv 2003.09711 (2020)"
    summary = "outlier exposure on adversarially perturbed inliers and outliers; MSP"
    Params = AloeParams
    preset_defaults = {"quick": {"epochs": 2, **REDUCED}, "smoke": {"epochs": 1, **REDUCED}}

    @property
    def attack_passes(self) -> int:
        return self.params.steps

    def prepare(self, context: TrainingContext) -> dict:
        if self.params.from_scratch:
            reinitialise(context.model)
        return {"from_scratch": self.params.from_scratch}

    def perturb(self, context: TrainingContext, x_in: Tensor, y: Tensor, x_out: Tensor,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
        p, model = self.params, context.model.eval()
        spec = AttackSpec("aloe training", p.eps, p.steps, p.step_size, "both")
        x_in = pgd(lambda x: F.cross_entropy(model.class_logits(x).float(), y, reduction="none"), x_in, spec, True,
                   generator, context.precision)
        x_out = pgd(lambda x: uniform_term(model.class_logits(x).float()), x_out, spec, True, generator, context.precision)
        model.train()
        return x_in, x_out
