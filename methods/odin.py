"""ODIN (Liang, Li & Srikant, ICLR 2018): temperature scaling plus input preprocessing.

``x~ = x - eps * sign(grad_x CE(f(x)/T, argmax f(x)))`` then outlier score
``-max_c softmax_c(f(x~)/T)``, with ``T = 1000`` and ``eps = 0.0014``. The network takes pixels in
[0, 1] and normalises inside, so the step is taken in pixel units: exactly the paper's step
``eps / std`` in normalised units (pytorch-ood's ``norm_std`` is therefore not needed). The
preprocessing is :func:`pytorch_ood.detector.odin_preprocessing`. The final softmax is computed in
float32 even under bfloat16 autocast: at ``T = 1000`` all probabilities are close to ``1/K`` and
bfloat16 rounding would tie most scores. bfloat16 can still move its AUROC by about 0.002
(0.0022 against float32 on mnist-test for a WRN-40-2 trained to 84%, the same on a CPU and an
H100), through the rounding inside the scoring pass's convolutions: a float32 preprocessing
gradient or float32 pooled features change nothing. ``--precision fp32`` gives the exact value.
The original tuned eps on 21 values in [0, 0.004] with held-out validation data; pass
``--param odin.eps=...`` to use a tuned value.

Under ``--protocol mim-notebook``: ``eps = 0.002`` stepped in normalised input units, on the
gradient of ``nll_loss`` applied to the tempered *logits* (pytorch-ood 0.1.6's default criterion,
so the step raises the top logit rather than its softmax probability), as the MIM notebooks ran
it (:mod:`oodbench.notebook`).

Under ``--protocol openood-v1.5``: the same defaults (OpenOOD's ``noise: 0.0014`` is divided by
the normalisation std, so it is this step in pixel units), and ``--tune`` searches OpenOOD's sweep,
T in {1, 10, 100, 1000} x eps in {0.0014, 0.0028}.

Adversarial evaluation attacks a surrogate: the tempered MSP without the preprocessing step (its
``sign()`` has no useful gradient); the attacked images are then scored by ODIN itself.
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pytorch_ood.detector import odin_preprocessing
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs
from oodbench.notebook import EpsUnits, step_std

#: the loss whose input gradient gives the preprocessing step's sign
LOSSES = {"cross-entropy": F.cross_entropy, "logit": F.nll_loss}


@dataclass(frozen=True)
class OdinParams:
    #: softmax temperature T
    temperature: float = 1000.0
    #: input preprocessing step
    eps: float = 0.0014
    #: the units of eps: pixels in [0, 1], or normalised inputs (pytorch-ood 0.1.6)
    eps_units: EpsUnits = "pixels"
    #: the paper's cross-entropy, or "logit": nll_loss on the tempered logits (pytorch-ood 0.1.6)
    loss: Literal["cross-entropy", "logit"] = "cross-entropy"


class ODIN(Method):
    name = "odin"
    table_order = 20
    citation = "Liang, Li & Srikant, Enhancing The Reliability of Out-of-distribution Image Detection in Neural Networks, ICLR 2018"
    summary = "max softmax at temperature T of an input nudged toward higher confidence"
    Params = OdinParams
    protocol_defaults = {"mim-notebook": {"eps": 0.002, "eps_units": "normalised", "loss": "logit"}}
    #: a coarser version of the paper's grid (eps: 21 values in [0, 0.004]; T from 1 to 1000)
    search_space = {"eps": (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.003, 0.004), "temperature": (1.0, 10.0, 100.0, 1000.0)}
    #: OpenOOD v1.5's sweep (configs/postprocessors/odin.yml), temperature varying slowest as there
    search_space_under = {"openood-v1.5": {"temperature": (1.0, 10.0, 100.0, 1000.0), "eps": (0.0014, 0.0028)}}
    reads = frozenset({Reads.IMAGES})
    #: the preprocessing step's sign() has no useful gradient: attacks go through the tempered MSP
    attacked_through = "surrogate"

    def score(self, data: ScoreInputs) -> Tensor:
        images = data.images
        model = images.model
        temperature, norm_std, criterion = self.params.temperature, step_std(model, self.params.eps_units), LOSSES[self.params.loss]

        def logits32(pixels: Tensor) -> Tensor:
            return model.class_logits(pixels).float()

        scores = []
        for batch in images:
            with images.precision():
                perturbed = odin_preprocessing(logits32, batch, criterion=criterion, eps=self.params.eps, temperature=temperature,
                                               norm_std=norm_std)
                with torch.no_grad():
                    logits = logits32(perturbed)
            scores.append(-(logits / temperature).softmax(dim=1).max(dim=1).values)
        return torch.cat(scores)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        """Surrogate: the temperature-scaled MSP of the input itself, without the preprocessing step."""
        return -(model.class_logits(pixels).float() / self.params.temperature).softmax(dim=1).max(dim=1).values
