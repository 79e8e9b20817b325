"""GEN: generalized entropy (Liu, Lochman & Zach, CVPR 2023).

Outlier score ``(1/M) sum_{j in top-M} p_j^gamma (1 - p_j)^gamma`` over the ``M`` largest softmax
probabilities ``p`` (the paper's Eq. 7 as a confidence is its negative; pytorch-ood averages where the paper
sums, a constant factor that leaves every metric unchanged; :meth:`pytorch_ood.detector.GEN.score`).
``gamma = 0.1`` and ``M = 100`` are the paper's ImageNet settings and OpenOOD v1.5's; with fewer classes than
``M`` all of them are used. ``--tune`` searches OpenOOD's grid.
"""

from dataclasses import dataclass

from pytorch_ood.detector import GEN as GENDetector
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs


@dataclass(frozen=True)
class GenParams:
    #: exponent gamma of the generalized entropy
    gamma: float = 0.1
    #: how many of the largest probabilities enter the score (all when there are fewer classes)
    M: int = 100


class GEN(Method):
    name = "gen"
    table_order = 115
    citation = "Liu, Lochman & Zach, GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection, CVPR 2023"
    summary = "generalized entropy of the top-M softmax probabilities"
    Params = GenParams
    reads = frozenset({Reads.LOGITS})
    #: OpenOOD's sweep
    search_space = {"gamma": (0.01, 0.1, 0.5, 1, 2, 5, 10), "M": (10, 50, 100, 200, 500, 1000)}

    def score(self, data: ScoreInputs) -> Tensor:
        return GENDetector.score(data.logits.float(), gamma=self.params.gamma, M=min(self.params.M, data.num_classes))
