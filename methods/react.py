"""ReAct: rectified activations (Sun, Guo & Li, NeurIPS 2021).

Penultimate features are clipped at ``c``, the ``percentile``-th percentile of every activation of the ID
fitting split, ``h_bar = min(h, c)`` (the paper's Eq. 1), and the energy of the logits ``W h_bar + b`` is the
outlier score (its Eq. 2 negated; :class:`pytorch_ood.detector.ReAct` on the features as ``D x 1 x 1`` maps).
``percentile = 0.9``: the paper's setting. The paper estimates ``c`` on ID training data; under
``--protocol openood-v1.5`` it comes from the ID validation split, as OpenOOD does, with its sweep
{0.85, 0.9, 0.95, 0.99} for ``--tune``. Fitted state: ``c``.
"""

from dataclasses import dataclass

import torch
from pytorch_ood.detector import ReAct as ReActDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs
from oodbench.methods._shaping import as_maps, head_on_maps


@dataclass(frozen=True)
class ReactParams:
    #: the percentile (a fraction) of the ID activations that is the clipping threshold
    percentile: float = 0.9


class ReAct(Method):
    name = "react"
    table_order = 120
    citation = "Sun, Guo & Li, ReAct: Out-of-distribution Detection With Rectified Activations, NeurIPS 2021"
    summary = "energy after clipping the penultimate activations at an ID percentile"
    Params = ReactParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    fits = True
    fit_split_under = {"openood-v1.5": "val"}
    search_space = {"percentile": (0.85, 0.9, 0.95, 0.99)}

    def fit(self, train: FitInputs) -> dict:
        detector = ReActDetector(backbone=None, head=None, percentile=self.params.percentile)
        detector.fit_feature_maps(as_maps(train.features).cpu(), torch.zeros(len(train.features), dtype=torch.long))
        return {"threshold": float(detector.threshold)}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = ReActDetector(backbone=None, head=head_on_maps(data.head), threshold=self.state["threshold"])
        return detector.predict_feature_maps(as_maps(data.features))
