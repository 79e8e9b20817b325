"""Relative Mahalanobis distance (Ren et al., 2021).

Class-conditional Mahalanobis distance minus the distance under one background Gaussian fitted
to all ID **training** features: ``min_c [d_c(h) - d_0(h)]``
(:class:`pytorch_ood.detector.RMD`).
"""

from pytorch_ood.detector import RMD as RMDDetector
from torch import Tensor

from oodbench.api import Method, Reads, Representations


class RMD(Method):
    name = "rmd"
    citation = "Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan, A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection, arXiv 2106.09022 (2021)"
    summary = "class Mahalanobis distance minus background distance"
    reads = frozenset({Reads.FEATURES})
    fits = True

    def fit(self, train: Representations) -> None:
        self.detector = RMDDetector(encoder=None).fit_features(train.require("features"), train.require("labels"))

    def score(self, data: Representations) -> Tensor:
        return self.detector.predict_features(data.require("features"))
