"""KL matching (Hendrycks et al., ICML 2022).

For each class ``k`` a template posterior ``d_k`` is the mean softmax of the ID **training**
samples the network predicts as ``k``; the outlier score is ``min_k KL(softmax(f(x)) || d_k)``.
Fitted by :class:`pytorch_ood.detector.KLMatching` on the shared logits (the fitted state is the
templates) and scored with its formula: float32 posteriors, ``0 log 0 = 0``, and the log of a
template's zero entries replaced by float32's lowest value. The sums are accumulated in float64:
the divergence is the difference of two terms near ``log K``, so float32 rounding inside a matrix
product (which depends on the batch's shape) would move a confident network's scores by more than
their spread, and fail the batch-independence check.

Under ``--protocol openood-v1.5``: templates from the ID *validation* split, as OpenOOD's KLM
fits them (a class no validation sample is predicted as has no template here; OpenOOD gives it a
one-hot template).

Under ``--protocol mim-notebook``, as pytorch-ood 0.1.6 did in the MIM notebooks: templates
fitted on the ID test split and grouped by the *true* labels, and the score is the divergence to
the template of the predicted class only (not the nearest template).
"""

from dataclasses import dataclass
from typing import Literal

import torch
from pytorch_ood.detector import KLMatching as KLMatchingDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs


@dataclass(frozen=True)
class KlMatchingParams:
    #: which samples make class k's template: those predicted as k (the paper), or labelled k (0.1.6)
    templates: Literal["predicted", "labels"] = "predicted"
    #: the divergence scored: to the nearest template (the paper), or to the predicted class's (0.1.6)
    match: Literal["nearest", "predicted"] = "nearest"


def kl_to_templates(probabilities: Tensor, templates: Tensor, log_zero: float) -> Tensor:
    """``KL(p || d_k)`` for every input and template, ``B x K``, accumulated in float64 (0 log 0 = 0; the log of a
    template's zero entries is ``log_zero``)."""
    p = probabilities.double()
    entropy_term = torch.where(p > 0, p * p.log(), 0.0).sum(dim=1, keepdim=True)
    return entropy_term - p @ templates.double().log().clamp_min(log_zero).T


#: pytorch-ood's log of a zero template entry (its ``KLMatching``), and pytorch-ood 0.1.6's (the log of the smallest normal float32)
LOG_ZERO = {"nearest": torch.finfo(torch.float32).min, "predicted": float(torch.log(torch.tensor(torch.finfo(torch.float32).tiny)))}


class KLMatching(Method):
    name = "klmatching"
    table_order = 70
    citation = "Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt & Song, Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022"
    summary = "KL divergence to the nearest class-template posterior"
    Params = KlMatchingParams
    reads = frozenset({Reads.LOGITS})
    fits = True
    protocol_defaults = {"mim-notebook": {"templates": "labels", "match": "predicted"}}
    fit_split_under = {"mim-notebook": "test", "openood-v1.5": "val"}

    def fit(self, train: FitInputs) -> dict:
        if self.params.templates == "predicted":
            detector = KLMatchingDetector(model=None).fit_logits(train.logits, train.labels)
            return {"templates": {k: v.detach() for k, v in detector.dists.items()}}
        probabilities = train.logits.float().softmax(dim=1)
        return {"templates": {str(k.item()): probabilities[train.labels == k].mean(dim=0) for k in train.labels.unique()}}

    def score(self, data: ScoreInputs) -> Tensor:
        classes = sorted(self.state["templates"], key=int)
        templates = torch.stack([self.state["templates"][k] for k in classes]).to(data.logits.device)
        probabilities = data.logits.float().softmax(dim=1)
        divergences = kl_to_templates(probabilities, templates, LOG_ZERO[self.params.match])
        if self.params.match == "nearest":
            return divergences.min(dim=1).values.float()
        predicted = torch.as_tensor([int(k) for k in classes], device=templates.device)
        column = (probabilities.argmax(dim=1)[:, None] == predicted[None]).float().argmax(dim=1)
        return divergences.gather(1, column[:, None]).squeeze(1).float()
