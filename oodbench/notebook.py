"""Settings shared by methods that reproduce the MIM paper's notebooks (``--protocol mim-notebook``).

The notebooks ran pytorch-ood 0.1.6. Two of its behaviours are settings of several methods here:

- input preprocessing (ODIN, Mahalanobis) stepped on the *normalised* input, without dividing the
  sign step by the normalisation std, so ``eps`` was in normalised units, not pixel units
  (:func:`step_std`);
- on CIFAR-100, Entropy and Energy were applied to the penultimate features instead of the logits
  (:class:`LogitsOrFeatures`): a bug, reproduced only under that protocol.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from oodbench.api import Capabilities, Classifier, Reads, ScoreInputs

EpsUnits = Literal["pixels", "normalised"]
Outputs = Literal["logits", "features"]


def step_std(model: Classifier, eps_units: EpsUnits) -> list[float] | None:
    """``norm_std`` for pytorch-ood's preprocessing: None for a step of ``eps`` in pixel units (the
    network normalises inside, so no division is needed), or ``1 / std`` per channel, which makes
    the pixel step ``eps * std``, i.e. ``eps`` in normalised units as pytorch-ood 0.1.6 stepped."""
    return None if eps_units == "pixels" else [1 / std for std in model.std.flatten().tolist()]


class LogitsOrFeatures:
    """A detector of logits that ``Params.on = "features"`` applies to penultimate features instead
    (mixed into a :class:`~oodbench.api.Method` whose ``Params`` has ``on``)."""

    def capabilities(self) -> Capabilities:
        reads = Reads.FEATURES if self.params.on == "features" else Reads.LOGITS
        return Capabilities(reads=frozenset({reads}), attack="score")

    def outputs(self, data: ScoreInputs) -> Tensor:
        return data.features if self.params.on == "features" else data.logits

    def attack_outputs(self, model: Classifier, pixels: Tensor) -> Tensor:
        return (model.features(pixels) if self.params.on == "features" else model.class_logits(pixels)).float()
