"""Energy score (Liu et al., NeurIPS 2020).

Outlier score ``-T * logsumexp(f(x) / T)`` with ``T = 1``, computed on logits by
:meth:`pytorch_ood.detector.EnergyBased.score`. Under ``--protocol mim-notebook`` on CIFAR-100
it is computed on the penultimate features instead, as the MIM notebooks did by mistake
(:mod:`oodbench.notebook`): a reproduced bug, never the clean protocol.
"""

from dataclasses import dataclass

from pytorch_ood.detector import EnergyBased
from torch import Tensor

from oodbench.api import Method, ScoreInputs
from oodbench.notebook import LogitsOrFeatures, Outputs


@dataclass(frozen=True)
class EnergyParams:
    #: temperature T of the free energy
    temperature: float = 1.0
    #: what the energy is taken of: the logits, or (the MIM notebooks' CIFAR-100 bug) the features
    on: Outputs = "logits"


class Energy(LogitsOrFeatures, Method):
    name = "energy"
    table_order = 50
    citation = "Liu, Wang, Owens & Li, Energy-based Out-of-distribution Detection, NeurIPS 2020"
    summary = "negative free energy -T logsumexp(f(x)/T) of the logits"
    Params = EnergyParams
    protocol_defaults = {"mim-notebook:cifar100": {"on": "features"}}

    def score(self, data: ScoreInputs) -> Tensor:
        return EnergyBased.score(self.outputs(data), t=self.params.temperature)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return EnergyBased.score(self.attack_outputs(model, pixels), t=self.params.temperature)
