"""NNGuide: nearest-neighbour guidance (Park, Jung & Teoh, ICCV 2023).

A bank holds the unit-normalised ID **training** features, each scaled by its energy confidence
``logsumexp f(z)``; the guidance of features ``h`` is the mean of their ``k`` largest inner products with the
bank after normalising ``h``, and the confidence is guidance times the sample's own energy confidence (the
paper's Eq. 5 and 6); the outlier score is its negative (:class:`pytorch_ood.detector.NNGuide`).
``k = 100`` and, under ``--protocol openood-v1.5``, a bank of 1% of the training split (OpenOOD's
``alpha = 0.01``, a random subset drawn with the run's seed); by default the whole split. Fitted state: the bank.
"""

from dataclasses import dataclass

import torch
from pytorch_ood.detector import NNGuide as NNGuideDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs
from oodbench.methods._linear import linear


@dataclass(frozen=True)
class NnguideParams:
    #: how many nearest bank entries make the guidance
    k: int = 100
    #: the fraction of the fitting split that makes the bank
    bank_fraction: float = 1.0


class NNGuide(Method):
    name = "nnguide"
    table_order = 145
    citation = "Park, Jung & Teoh, Nearest Neighbor Guidance for Out-of-Distribution Detection, ICCV 2023"
    summary = "energy guided by the similarity to energy-scaled nearest ID training features"
    Params = NnguideParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    fits = True
    protocol_defaults = {"openood-v1.5": {"bank_fraction": 0.01}}

    def fit(self, train: FitInputs) -> dict:
        features = train.features.float()
        count = max(self.params.k, round(len(features) * self.params.bank_fraction))
        if len(features) < self.params.k:
            raise ValueError(f"nnguide: k={self.params.k} exceeds the {len(features)} ID training samples; lower it with --param nnguide.k=N")
        if count < len(features):
            chosen = torch.randperm(len(features), generator=torch.Generator().manual_seed(train.seed))[:count]
            features = features[chosen.to(features.device)]
        detector = NNGuideDetector(encoder=None, head=linear(train.head), k=self.params.k)
        detector.fit_features(features, torch.zeros(len(features), dtype=torch.long, device=features.device))
        return {"bank": detector._scaled_features}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = NNGuideDetector(encoder=None, head=linear(data.head), k=self.params.k)
        detector._scaled_features = self.state["bank"]
        return detector.predict_features(data.features.float())
