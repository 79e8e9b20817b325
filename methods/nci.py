"""NCI: neural-collapse inspired detection (Liu & Qin, CVPR 2025).

With ``mu_g`` the mean ID **training** feature, the confidence of features ``h`` predicted as class ``c`` is
the cosine of ``h - mu_g`` and the class's weight vector ``w_c`` plus ``alpha ||h||_1`` (the paper's
pScore with its filtering term); the outlier score is its negative (:class:`pytorch_ood.detector.NCI`, which
subtracts the norm term as an outlier score does). ``alpha = 1e-4``: OpenOOD v1.5's setting, with its sweep
for ``--tune``. Fitted state: ``mu_g``.
"""

from dataclasses import dataclass

from pytorch_ood.detector import NCI as NCIDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs
from oodbench.methods._linear import linear


@dataclass(frozen=True)
class NciParams:
    #: weight of the L1 feature-norm term
    alpha: float = 1e-4


class NCI(Method):
    name = "nci"
    table_order = 140
    citation = "Liu & Qin, Detecting Out-of-distribution through the Lens of Neural Collapse, CVPR 2025"
    summary = "alignment of the centred features with the predicted class's weights, plus their norm"
    Params = NciParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    fits = True
    search_space = {"alpha": (1e-4, 1e-3, 1e-2, 1e-1)}

    def fit(self, train: FitInputs) -> dict:
        return {"global_mean": train.features.float().mean(dim=0)}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = NCIDetector(encoder=None, head=linear(data.head), alpha=self.params.alpha)
        detector.fit_features(self.state["global_mean"][None].to(data.features.device))
        return detector.predict_features(data.features.float())
