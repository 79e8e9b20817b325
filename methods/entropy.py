"""Predictive entropy: outlier score ``H(softmax(f(x)))`` on logits (:class:`pytorch_ood.detector.Entropy`).

The MIM paper's CIFAR-100 entropy row was computed on penultimate features by mistake; oodbench
computes it on logits, as defined, and reproduces the mistake only under ``--protocol
mim-notebook`` on CIFAR-100 (:mod:`oodbench.notebook`).
"""

from dataclasses import dataclass

from pytorch_ood.detector import Entropy as EntropyDetector
from torch import Tensor

from oodbench.api import Method, ScoreInputs
from oodbench.notebook import LogitsOrFeatures, Outputs


@dataclass(frozen=True)
class EntropyParams:
    #: what the softmax is taken of: the logits, or (the MIM notebooks' CIFAR-100 bug) the features
    on: Outputs = "logits"


class Entropy(LogitsOrFeatures, Method):
    name = "entropy"
    table_order = 40
    citation = "Entropy of the predictive distribution, as used by Hendrycks & Gimpel, ICLR 2017 (baseline)"
    summary = "entropy of the softmax distribution"
    Params = EntropyParams
    protocol_defaults = {"mim-notebook:cifar100": {"on": "features"}}

    def score(self, data: ScoreInputs) -> Tensor:
        return EntropyDetector.score(self.outputs(data))

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return EntropyDetector.score(self.attack_outputs(model, pixels))
