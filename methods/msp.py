"""Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017).

Outlier score ``-max_c softmax_c(f(x))`` (the baseline of every OOD paper), computed by
:meth:`pytorch_ood.detector.MaxSoftmax.score` on the shared logits.
"""

from pytorch_ood.detector import MaxSoftmax
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs


class MSP(Method):
    name = "msp"
    table_order = 10
    citation = "Hendrycks & Gimpel, A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks, ICLR 2017"
    summary = "negative maximum softmax probability"
    reads = frozenset({Reads.LOGITS})
    attacked_through = "score"

    def score(self, data: ScoreInputs) -> Tensor:
        return MaxSoftmax.score(data.logits)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return MaxSoftmax.score(model.class_logits(pixels).float())
