"""SCALE (Xu, Lian, Liu & Lv, ICLR 2024).

Penultimate features are multiplied by ``exp(s1 / s2)``, where ``s1`` is the sum of a sample's activations and
``s2`` the sum of those above its own ``percentile``-th percentile (the paper's Eq. 4; nothing is pruned),
and the energy of the resulting logits is the outlier score (:class:`pytorch_ood.detector.SCALE`, applied
after the pooling as in the paper). ``percentile = 0.85``: the paper's and OpenOOD v1.5's setting; ``--tune``
searches OpenOOD's sweep. Nothing is fitted.
"""

from dataclasses import dataclass

from pytorch_ood.detector import SCALE as SCALEDetector
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs
from oodbench.methods._shaping import as_maps, head_on_maps


@dataclass(frozen=True)
class ScaleParams:
    #: the per-sample percentile (a fraction) above which activations make ``s2``
    percentile: float = 0.85


class SCALE(Method):
    name = "scale"
    table_order = 130
    citation = "Xu, Lian, Liu & Lv, Scaling for Training Time and Post-hoc Out-of-distribution Detection Enhancement, ICLR 2024"
    summary = "energy after scaling the penultimate activations by their top-percentile share"
    Params = ScaleParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    search_space = {"percentile": (0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = SCALEDetector(backbone=None, head=head_on_maps(data.head), percentile=self.params.percentile)
        return detector.predict_feature_maps(as_maps(data.features))
