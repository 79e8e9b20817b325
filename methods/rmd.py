"""Relative Mahalanobis distance (Ren et al., 2021).

Class-conditional Mahalanobis distance minus the distance under one background Gaussian fitted
to all ID **training** features: ``min_c [d_c(h) - d_0(h)]`` over the classes the split has
(:class:`pytorch_ood.detector.RMD`).
"""

from pytorch_ood.detector import RMD as RMDDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs

#: the detector's fitted attributes: class means, shared precision, background Gaussian
FITTED = ("mu", "precision", "background_mu", "background_precision")


class RMD(Method):
    name = "rmd"
    table_order = 90
    citation = "Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan, A Simple Fix to Mahalanobis Distance for Improving Near-OOD Detection, arXiv 2106.09022 (2021)"
    summary = "class Mahalanobis distance minus background distance"
    reads = frozenset({Reads.FEATURES})
    fits = True
    #: the MIM notebooks fitted it on the ID test split
    fit_split_under = {"mim-notebook": "test"}

    def fit(self, train: FitInputs) -> dict:
        detector = RMDDetector(encoder=None).fit_features(train.features, train.present_labels)
        return {name: getattr(detector, name) for name in FITTED}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = RMDDetector(encoder=None)
        for name in FITTED:
            setattr(detector, name, self.state[name])
        return detector.predict_features(data.features)
