"""Temperature scaling (Guo, Pleiss, Sun & Weinberger, ICML 2017).

One temperature ``T > 0`` divides the logits ``z``; it minimises the negative log-likelihood of the labels of
held-out ID data (the paper's Section 4.2, "temperature scaling"). The outlier score is the negated maximum softmax
probability of ``z / T``. Calibration needs data the network was not trained on, so the method fits on the ID set's
``val`` split; an ID set without one does not run it.

``exact = True`` (the default) solves for the minimiser: L-BFGS with a strong-Wolfe line search until it converges.
``exact = False`` takes the 50 L-BFGS iterations at learning rate 0.01 of :class:`pytorch_ood.detector.TemperatureScaling`
and OpenOOD, which stop short of the minimiser when it is far from the start (from 1 toward 2 they get to about
1.2): under ``--protocol openood-v1.5`` that is the setting, started at OpenOOD's ``T = 1.5``. Fitted state: ``T``.
"""

from dataclasses import dataclass

import torch
from pytorch_ood.detector import MaxSoftmax
from pytorch_ood.detector import TemperatureScaling as TemperatureScalingDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs


@dataclass(frozen=True)
class TempScaleParams:
    #: where L-BFGS starts its search for the temperature
    initial_temperature: float = 1.0
    #: solve for the NLL minimiser (True), or take pytorch-ood's and OpenOOD's 50 small L-BFGS steps (False)
    exact: bool = True


class TempScale(Method):
    name = "tempscale"
    table_order = 112
    citation = "Guo, Pleiss, Sun & Weinberger, On Calibration of Modern Neural Networks, ICML 2017"
    summary = "maximum softmax probability after the temperature that calibrates held-out ID data"
    Params = TempScaleParams
    reads = frozenset({Reads.LOGITS})
    fits = True
    fit_split = "val"
    protocol_defaults = {"openood-v1.5": {"initial_temperature": 1.5, "exact": False}}

    def fit(self, train: FitInputs) -> dict:
        logits, labels = train.logits.float().cpu(), train.labels.long().cpu()
        detector = TemperatureScalingDetector(model=None)
        with torch.no_grad():
            detector.t.fill_(self.params.initial_temperature)
        with torch.enable_grad():
            if self.params.exact:
                _minimise_nll(detector.t, logits, labels)
            else:
                detector.fit_logits(logits, labels)
        return {"temperature": float(detector.t.detach())}

    def score(self, data: ScoreInputs) -> Tensor:
        return MaxSoftmax.score(data.logits.float(), t=self.state["temperature"])


def _minimise_nll(temperature: torch.nn.Parameter, logits: Tensor, labels: Tensor) -> None:
    """Sets ``temperature`` to the minimiser of the mean NLL of ``labels`` under ``softmax(logits / T)`` (it is convex in
    ``1 / T``): L-BFGS steps with a strong-Wolfe line search until the gradient or the step vanishes."""
    optimizer = torch.optim.LBFGS([temperature], lr=1.0, max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / temperature, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
