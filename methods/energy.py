"""Energy score (Liu et al., NeurIPS 2020).

Outlier score ``-T * logsumexp(f(x) / T)`` with ``T = 1``, computed on logits (never on
features) by :meth:`pytorch_ood.detector.EnergyBased.score`.
"""

from dataclasses import dataclass

from pytorch_ood.detector import EnergyBased
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs


@dataclass(frozen=True)
class EnergyParams:
    #: temperature T of the free energy
    temperature: float = 1.0


class Energy(Method):
    name = "energy"
    table_order = 50
    citation = "Liu, Wang, Owens & Li, Energy-based Out-of-distribution Detection, NeurIPS 2020"
    summary = "negative free energy -T logsumexp(f(x)/T) of the logits"
    Params = EnergyParams
    reads = frozenset({Reads.LOGITS})
    attacked_through = "score"

    def score(self, data: ScoreInputs) -> Tensor:
        return EnergyBased.score(data.logits, t=self.params.temperature)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return EnergyBased.score(model.class_logits(pixels).float(), t=self.params.temperature)
