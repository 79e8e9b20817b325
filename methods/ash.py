"""ASH: activation shaping (Djurisic, Bozanic, Ashok & Liu, ICLR 2023).

Per sample, the activations below its ``percentile``-th percentile are set to zero and the rest are reshaped
by the variant (the paper's Section 3): ``p`` keeps them (ASH-P), ``b`` sets each to ``s1 / k``, the sum of
all activations spread over the ``k`` kept ones (ASH-B), ``s`` multiplies them by ``exp(s1 / s2)``, ``s2``
the sum of the kept ones (ASH-S); the energy of the logits of the shaped features is the outlier score
(:class:`pytorch_ood.detector.ASH`).

Where: ``on="features"`` (the default) shapes the pooled penultimate features, as OpenOOD v1.5 does (its
``ASHNet.forward_threshold``); ``on="last_map"`` shapes the last feature map before pooling, as the paper
does, on backbones that expose it (``--variant ash-map=ash:on=last_map`` runs both in one table). The default ASH-S at 0.9 is the paper's ImageNet
setting; under ``--protocol openood-v1.5`` ASH-B at 0.9, OpenOOD's, with its sweep of the percentile for
``--tune``. Nothing is fitted.
"""

from dataclasses import dataclass
from typing import Literal

from pytorch_ood.detector import ASH as ASHDetector
from torch import Tensor

from oodbench.api import Capabilities, Method, Reads, Reduction, ScoreInputs
from oodbench.methods._shaping import as_maps, head_on_maps


@dataclass(frozen=True)
class AshParams:
    #: the shaping after pruning: p (keep), b (binarise to s1 / k), s (scale by exp(s1 / s2))
    variant: Literal["p", "b", "s"] = "s"
    #: the per-sample percentile (a fraction) below which activations are pruned
    percentile: float = 0.9
    #: what is shaped: the pooled penultimate features, or the last feature map before pooling (the paper's place)
    on: Literal["features", "last_map"] = "features"


class ASH(Method):
    name = "ash"
    table_order = 125
    citation = "Djurisic, Bozanic, Ashok & Liu, Extremely Simple Activation Shaping for Out-of-Distribution Detection, ICLR 2023"
    summary = "energy after pruning low activations and reshaping the rest (ASH-P, -B, -S)"
    Params = AshParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})
    protocol_defaults = {"openood-v1.5": {"variant": "b"}}
    search_space = {"percentile": (0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)}

    def capabilities(self) -> Capabilities:
        if self.params.on == "last_map":
            return Capabilities(reads={Reads.HEAD}, layers={"last_map": Reduction.MAP})
        return super().capabilities()

    def score(self, data: ScoreInputs) -> Tensor:
        detector = ASHDetector(backbone=None, head=head_on_maps(data.head), variant=f"ash-{self.params.variant}",
                               percentile=self.params.percentile)
        maps = data.layers["last_map"] if self.params.on == "last_map" else as_maps(data.features)
        return detector.predict_feature_maps(maps)
