"""VRA: variational rectified activation (Xu, Lian, Liu & Tao, NeurIPS 2023).

The paper finds, by a variational argument, that the best rectification suppresses abnormally low and high
activations and amplifies the ones in between, and approximates it by a piecewise function of each penultimate
activation ``h``: ``0`` below ``alpha``, ``h + gamma`` from ``alpha`` to ``beta``, ``beta`` above it (VRA with
``gamma = 0``, VRA+ with ``gamma > 0``); the energy of the logits of the rectified features is the outlier score.
As the authors' code does, ``alpha`` and ``beta`` are the ``lower`` and ``upper`` quantiles of each feature dimension
over the ID training features (``thresholds="per_dimension"``); their CIFAR-10 setting 0.6 / 0.9 is the default, 0.6 /
0.95 on CIFAR-100.

Under ``--protocol openood-v1.5`` it is OpenOOD's VRA: one lower and one upper threshold, percentiles 10 and 90 of
every activation of the ID validation split (``thresholds="global"``), activations clipped to them from both sides
(``below="clip"``: low ones are raised to ``alpha``, not zeroed), OpenOOD's sweep for ``--tune``.
:class:`pytorch_ood.detector.VRA` is this two-sided clipping with per-element thresholds, not the paper's function;
it is this method with ``below="clip"`` (and is the reference it is tested against). Fitted state: ``alpha``, ``beta``.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_ood.detector import EnergyBased
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs


@dataclass(frozen=True)
class VraParams:
    #: the quantile (a fraction) of the ID activations below which an activation is suppressed
    lower: float = 0.6
    #: the quantile (a fraction) of the ID activations above which an activation is cut to it
    upper: float = 0.9
    #: what the activations between the two thresholds gain (VRA+); 0 is VRA
    gamma: float = 0.0
    #: one pair of thresholds per feature dimension (the authors' code) or one for every activation (OpenOOD)
    thresholds: Literal["per_dimension", "global"] = "per_dimension"
    #: what becomes of activations below the lower threshold: zero (the paper) or the threshold (OpenOOD, pytorch-ood)
    below: Literal["zero", "clip"] = "zero"


class VRA(Method):
    name = "vra"
    table_order = 122
    citation = "Xu, Lian, Liu & Tao, VRA: Variational Rectified Activation for Out-of-distribution Detection, NeurIPS 2023"
    summary = "energy after suppressing low and high activations and amplifying the ones between"
    Params = VraParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    fits = True
    dataset_defaults = {"cifar100": {"upper": 0.95}}
    protocol_defaults = {"openood-v1.5": {"lower": 0.1, "upper": 0.9, "thresholds": "global", "below": "clip"}}
    fit_split_under = {"openood-v1.5": "val"}
    #: the authors' settings on CIFAR and ImageNet lie in this grid
    search_space = {"lower": (0.5, 0.6), "upper": (0.85, 0.9, 0.95)}
    search_space_under = {"openood-v1.5": {"upper": (0.85, 0.9, 0.95, 0.99), "lower": (0.01, 0.05, 0.1, 0.15)}}

    def fit(self, train: FitInputs) -> dict:
        if not 0 <= self.params.lower <= self.params.upper <= 1:
            raise ValueError(f"vra: need 0 <= lower <= upper <= 1, got lower={self.params.lower}, upper={self.params.upper}")
        if self.params.below == "clip" and self.params.gamma:
            raise ValueError(f"vra: gamma={self.params.gamma} amplifies the paper's function (below=zero); below=clip has none")
        features = train.features.float().cpu().numpy()
        axis = 0 if self.params.thresholds == "per_dimension" else None
        alpha, beta = (torch.from_numpy(np.atleast_1d(np.quantile(features, q, axis=axis)).astype(np.float32))
                       for q in (self.params.lower, self.params.upper))
        return {"alpha": alpha, "beta": beta}

    def rectify(self, features: Tensor) -> Tensor:
        """The paper's piecewise function (or, with ``below="clip"``, OpenOOD's clipping) of ``B x D`` features."""
        alpha, beta = (self.state[name].to(features.device) for name in ("alpha", "beta"))
        if self.params.below == "clip":
            return torch.minimum(torch.maximum(features, alpha), beta)
        shifted = torch.where(features < alpha, torch.zeros_like(features), features + self.params.gamma)
        return torch.where(features > beta, beta.expand_as(features), shifted)

    def score(self, data: ScoreInputs) -> Tensor:
        logits = F.linear(self.rectify(data.features.float()), data.head.weight.float(), data.head.bias.float())
        return EnergyBased.score(logits)
