"""RankFeat: rank-1 feature removal (Song, Sebe & Wang, NeurIPS 2022).

Each sample's last feature map before pooling, as a ``C x HW`` matrix ``X``, loses its dominant rank-1
component, ``X' = X - s1 u1 v1^T`` from its singular value decomposition (the paper's Eq. 2); the
rest of the network (global average pooling and the last layer) maps ``X'`` to logits whose energy is the
outlier score (its Eq. 3 negated; :class:`pytorch_ood.detector.RankFeat`). This is the paper's removal at
the last block (its "Block 4"); its fusion with the removal at the block before is not done here. Reads
the backbone's ``last_map`` layer, so it runs on backbones that declare one (CNNs). No parameters;
nothing is fitted.
"""

from pytorch_ood.detector import RankFeat as RankFeatDetector
from torch import Tensor

from oodbench.api import Method, Reads, Reduction, ScoreInputs
from oodbench.methods._shaping import head_on_maps


class RankFeat(Method):
    name = "rankfeat"
    table_order = 160
    citation = "Song, Sebe & Wang, RankFeat: Rank-1 Feature Removal for Out-of-distribution Detection, NeurIPS 2022"
    summary = "energy after removing the dominant singular component of the last feature map"
    reads = frozenset({Reads.HEAD})
    layers = {"last_map": Reduction.MAP}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = RankFeatDetector(backbone=None, head=head_on_maps(data.head))
        return detector.predict_feature_maps(data.layers["last_map"].float())
