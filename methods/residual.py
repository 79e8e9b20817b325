"""Residual: the norm of the features outside their principal subspace (Wang, Li, Feng & Zhang, CVPR 2022).

The baseline of the ViM paper that is ViM without its logit part: features are centred at ``u = -W^+ b``,
and the outlier score is the norm of their projection onto the complement of the ``d``-dimensional
principal subspace of the ID fitting split (the paper's Eq. 5, ``||x^{P-perp}||``). The subspace is fitted
as :mod:`oodbench.methods.vim` fits it (:class:`pytorch_ood.detector.ViM`), ``d`` half the feature
dimension by default. pytorch-ood has no Residual detector; OpenOOD v1.5 does: under
``--protocol openood-v1.5`` its ``dim: 512``, fitted on the ID validation split as its postprocessor is, and
no search (its config has no sweep). A ``d`` of at least the feature dimension leaves no residual: every
score is 0, as in OpenOOD (on a 512-d ResNet-18 that is what its setting gives).
"""

import torch
from torch import Tensor

from oodbench.api import FitInputs, ScoreInputs
from oodbench.methods.vim import ViM


class Residual(ViM):
    name = "residual"
    table_order = 105
    summary = "norm of the centred features outside their principal subspace"
    fit_split_under = {"openood-v1.5": "val"}
    protocol_defaults = {"openood-v1.5": {"d": 512}}
    search_space_under = {"openood-v1.5": {}}

    def fit(self, train: FitInputs) -> dict:
        head = train.head
        return {**super().fit(train), "origin": -(torch.linalg.pinv(head.weight.float()) @ head.bias.float())}

    def score(self, data: ScoreInputs) -> Tensor:
        centred = data.features.float() - self.state["origin"].to(data.features.device)
        return torch.linalg.vector_norm(centred @ self.state["principal_subspace"].to(centred.device), dim=1)
