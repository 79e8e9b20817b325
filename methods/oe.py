"""Outlier Exposure (Hendrycks, Mazeika & Dietterich, ICLR 2019): fine-tune with auxiliary outliers.

Loss (each term averaged over its own sub-batch, as in the original code; pytorch-ood's
``OutlierExposureLoss`` averages over the combined batch instead, so it is not used here):

    L = CE(f(x_in), y) + 0.5 * mean_out[ -( mean_c f_c(x_out) - logsumexp_c f_c(x_out) ) ]

:func:`outlier_exposure_loss`. Fine-tuning as in the original CIFAR ``oe_tune`` runs: 10 epochs,
SGD (lr 1e-3, momentum 0.9, Nesterov, weight decay 5e-4) with the learning rate annealed per
step on a cosine from 1e-3 to 1e-6, 128 ID and 256 auxiliary images in one forward pass, train
mode, RandomCrop(32, padding 4) + horizontal flip on both
(:class:`oodbench.models.outlier_training.OutlierTraining`, the loop ALOE and ATOM share). An
epoch is one pass over the ID training split (the last partial batch kept, as the OE code's
DataLoader does); auxiliary batches
cycle through a fresh permutation of the auxiliary set. Detection: maximum softmax probability.

Auxiliary data: ``--aux NAME``, any dataset of role ``aux``; without ``--aux``, the usual
replacement of the withdrawn 80 Million Tiny Images the original used: the 300K Random Images
(``tinyimages300k``, downloaded on first use). The ``quick`` preset fine-tunes 2 epochs and
``smoke`` 1 instead of 10.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_ood.detector import MaxSoftmax
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs
from oodbench.models.outlier_training import OutlierTraining


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


def uniform_term(logits: Tensor) -> Tensor:
    """Per sample, ``-(mean_c f_c - logsumexp_c f_c)``: cross-entropy to the uniform posterior."""
    return -(logits.mean(dim=1) - torch.logsumexp(logits, dim=1))


def outlier_exposure_loss(logits_in: Tensor, targets: Tensor, logits_out: Tensor, weight: float) -> Tensor:
    """``CE(in) + weight * mean_out[-(mean_c f_c - logsumexp_c f_c)]``, each mean over its own sub-batch."""
    return F.cross_entropy(logits_in, targets) + weight * uniform_term(logits_out).mean()


class OutlierExposure(OutlierTraining, Method):
    name = "oe"
    table_order = 210
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

    def outlier_loss(self, logits_in: Tensor, targets: Tensor, logits_out: Tensor, num_classes: int) -> Tensor:
        return outlier_exposure_loss(logits_in, targets, logits_out, self.params.weight)

    def score(self, data: ScoreInputs) -> Tensor:
        return MaxSoftmax.score(data.logits)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return MaxSoftmax.score(model.class_logits(pixels).float())
