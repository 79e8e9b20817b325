"""SHE: simplified Hopfield energy (Zhang et al., ICLR 2023).

The stored pattern of class ``c`` is the mean penultimate feature of the ID **training** samples of class
``c`` that the network classifies correctly; the confidence of features ``h`` predicted as class ``y`` is
their inner product with the pattern of ``y`` (the paper's Eq. 6 with the inner product, OpenOOD v1.5's
``metric: inner_product``); the outlier score is its negative (:class:`pytorch_ood.detector.SHE`).

A class with no correctly classified training sample (a set holding a few of a large label space's
classes, or a weak network) stores no pattern: a sample predicted as that class has confidence 0, where
pytorch-ood refuses to fit. No parameters. Fitted state: the patterns (zeros for a class without one).
"""

import torch
from pytorch_ood.detector import SHE as SHEDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs
from oodbench.methods._linear import linear


class SHE(Method):
    name = "she"
    table_order = 150
    citation = ("Zhang et al., Out-of-Distribution Detection based on In-Distribution Data Patterns Memorization "
                "with Modern Hopfield Energy, ICLR 2023")
    summary = "inner product with the predicted class's mean correctly classified ID training feature"
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    fits = True

    def fit(self, train: FitInputs) -> dict:
        features = train.features.float()
        correct = linear(train.head)(features).argmax(dim=1) == train.labels
        patterns = features.new_zeros(train.num_classes, features.shape[1])
        counts = torch.bincount(train.labels[correct], minlength=train.num_classes).to(features.dtype)
        patterns.index_add_(0, train.labels[correct], features[correct])
        stored = counts > 0
        patterns[stored] /= counts[stored, None]
        return {"patterns": patterns}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = SHEDetector(encoder=None, head=linear(data.head))
        detector.patterns = self.state["patterns"].to(data.features.device)
        return detector.predict_features(data.features.float())
