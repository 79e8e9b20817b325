"""fDBD: fast decision-boundary distance (Liu & Qin, ICML 2024).

For features ``z`` predicted as class ``y``, the distance to each other class's decision boundary of the last
layer in closed form, ``|f_y(z) - f_c(z)| / ||w_y - w_c||``, averaged over the classes ``c != y`` and divided
by the distance ``||z - mu||`` to the mean ID **training** feature (the paper's Eq. 4 with its feature-mean
normalisation, OpenOOD v1.5's ``distance_as_normalizer``); the outlier score is its negative
(:class:`pytorch_ood.detector.fDBD`). No parameters. Fitted state: ``mu`` and the ``K x K`` norms
``||w_y - w_c||`` (computed once, pairwise, where pytorch-ood broadcasts all ``K x K x D`` differences).
"""

import torch
from pytorch_ood.detector import fDBD as FDBDDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs
from oodbench.methods._linear import linear


class FDBD(Method):
    name = "fdbd"
    table_order = 135
    citation = "Liu & Qin, Fast Decision Boundary based Out-of-Distribution Detector, ICML 2024"
    summary = "mean distance to the other classes' decision boundaries, over the distance to the ID mean"
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    fits = True

    def fit(self, train: FitInputs) -> dict:
        weight = train.head.weight.double()
        # ||w_p - w_c|| for every pair; pytorch-ood forms all K x K x D differences (5 GB for 1000 classes of 1280-d)
        distances = torch.cdist(weight, weight).float()
        distances.fill_diagonal_(1.0)
        return {"train_mean": train.features.float().mean(dim=0), "boundary_norms": distances}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = FDBDDetector(encoder=None, head=linear(data.head))
        detector.train_mean, detector._denom_matrix = self.state["train_mean"], self.state["boundary_norms"]
        return detector.predict_features(data.features.float())
