"""ViM: virtual-logit matching (Wang, Li, Feng & Zhang, CVPR 2022).

Features are centred at ``u = -W^+ b``; the norm of their residual outside the ``d``-dimensional
principal subspace of the ID **training** features, scaled by ``alpha`` (mean max-logit over
mean residual norm), is a virtual logit; outlier score ``alpha ||x^P_perp|| - logsumexp(f(x))``
(:class:`pytorch_ood.detector.ViM`). ``d`` defaults to half the feature dimension: 64 for the
128-d features of WRN-40-2, as in the MIM paper. A ``d`` of at least the feature dimension leaves
no residual: the score is then the negative energy alone, as in OpenOOD (pytorch-ood would instead
fall back to half the dimension). Under ``--protocol openood-v1.5``: OpenOOD's ``d = 256`` and its
sweep {256, 1000} for ``--tune`` (on a 512-d ResNet-18, 1000 is the energy score).
Fitted state: the residual basis and ``alpha``; the origin ``u`` comes from the head at scoring time.
"""

from dataclasses import dataclass

from pytorch_ood.detector import ViM as ViMDetector
from torch import Tensor

from oodbench.api import FitInputs, Head, Method, Reads, ScoreInputs


@dataclass(frozen=True)
class VimParams:
    #: dimension of the principal subspace; None = half the feature dimension
    d: int | None = None


class ViM(Method):
    name = "vim"
    table_order = 100
    citation = "Wang, Li, Feng & Zhang, ViM: Out-Of-Distribution with Virtual-logit Matching, CVPR 2022"
    summary = "residual norm outside the principal feature subspace, matched to the logits"
    Params = VimParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    fits = True
    #: the MIM notebooks fitted it on the ID test split
    fit_split_under = {"mim-notebook": "test"}
    protocol_defaults = {"openood-v1.5": {"d": 256}}
    search_space_under = {"openood-v1.5": {"d": (256, 1000)}}

    def _detector(self, head: Head, d: int) -> ViMDetector:
        return ViMDetector(encoder=None, d=d, w=head.weight, b=head.bias)

    def fit(self, train: FitInputs) -> dict:
        features = train.features
        d = self.params.d if self.params.d is not None else features.shape[1] // 2
        if d >= features.shape[1]:
            return {"d": features.shape[1], "principal_subspace": features.new_zeros(features.shape[1], 0).float(), "alpha": 0.0}
        detector = self._detector(train.head, d).fit_features(features, train.labels)
        return {"d": detector.d, "principal_subspace": detector.principal_subspace, "alpha": detector.alpha}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = self._detector(data.head, self.state["d"])
        detector.principal_subspace, detector.alpha = self.state["principal_subspace"], self.state["alpha"]
        return detector.predict_features(data.features)
