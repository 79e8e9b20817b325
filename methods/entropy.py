"""Predictive entropy: outlier score ``H(softmax(f(x)))`` on logits (:class:`pytorch_ood.detector.Entropy`).

Note: the MIM paper's CIFAR-100 entropy row was computed on penultimate features by mistake;
oodbench computes it on logits, as defined.
"""

from pytorch_ood.detector import Entropy as EntropyDetector
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs


class Entropy(Method):
    name = "entropy"
    table_order = 40
    citation = "Entropy of the predictive distribution, as used by Hendrycks & Gimpel, ICLR 2017 (baseline)"
    summary = "entropy of the softmax distribution"
    reads = frozenset({Reads.LOGITS})
    attacked_through = "score"

    def score(self, data: ScoreInputs) -> Tensor:
        return EntropyDetector.score(data.logits)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return EntropyDetector.score(model.class_logits(pixels).float())
