"""Gram matrices (Sastry & Oore, ICML 2020).

For each layer ``l`` the backbone exposes and each order ``p``, the row sums of the higher-order Gram matrix
``G_l^p = (F_l^p F_l^p^T)^(1/p)`` of its feature map (the paper's Eq. 1; :attr:`~oodbench.api.Reduction.GRAM`). Per
class, the minimum and maximum of every entry over the ID training samples of that class are the bounds; a sample's
deviation at a layer sums, over orders and entries, how far each value of the class it is predicted as lies outside
them, relative to the bound (the paper's Eq. 2-3), and the outlier score is the sum over layers of the deviation over
its expected value on held-out ID data (Eq. 4): 10% of each class's training samples, drawn with the run's seed, are
held out of the bounds for that. This follows :class:`pytorch_ood.detector.Gram`, on every layer the backbone exposes
rather than every convolution and ReLU the authors hook. ``orders = 10`` is the paper's; OpenOOD v1.5 uses 1..5.
A class without training samples (a set in a large label space) is bounded by all training samples.
Fitted state: the bounds per layer, order and class, and each layer's expected deviation.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from oodbench.api import EVERY_LAYER, GRAM_ORDERS, FitInputs, Method, Reads, Reduction, ScoreInputs

#: the share of each class's training samples held out to estimate a layer's expected deviation
HELD_OUT = 0.1


@dataclass(frozen=True)
class GramParams:
    #: the orders p = 1..orders of the Gram matrices compared (at most 10)
    orders: int = GRAM_ORDERS


def deviation(values: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``B x P x C`` statistics outside ``[low, high]`` (same shape), relative to the bound, summed per sample."""
    below = F.relu(low - values) / (low + 1e-6).abs()
    above = F.relu(values - high) / (high + 1e-6).abs()
    return (below + above).flatten(1).sum(dim=1)


class Gram(Method):
    name = "gram"
    table_order = 170
    citation = "Sastry & Oore, Detecting Out-of-Distribution Examples with Gram Matrices, ICML 2020"
    summary = "deviation of every layer's higher-order Gram statistics from the predicted class's ID bounds"
    Params = GramParams
    reads = frozenset({Reads.LOGITS})
    layers = {EVERY_LAYER: Reduction.GRAM}
    fits = True
    protocol_defaults = {"openood-v1.5": {"orders": 5}}

    def fit(self, train: FitInputs) -> dict:
        if not 1 <= self.params.orders <= GRAM_ORDERS:
            raise ValueError(f"gram: orders must be 1..{GRAM_ORDERS}, got {self.params.orders}")
        generator = torch.Generator().manual_seed(train.seed)
        labels = train.labels.cpu()
        bounded, held_out = [], []
        for clazz in range(train.num_classes):  # pytorch-ood's draw: one permutation per class, in class order
            members = (labels == clazz).nonzero().flatten()
            order = members[torch.randperm(len(members), generator=generator)]
            cut = int(HELD_OUT * len(members))
            held_out.append(order[:cut])
            bounded.append(order[cut:])
        low, high, expected = {}, {}, {}
        for name, values in train.layers.items():
            values = values[:, : self.params.orders].float().cpu()
            everyone = (values.min(dim=0).values, values.max(dim=0).values)
            bounds = [(values[rows].min(dim=0).values, values[rows].max(dim=0).values) if len(rows) else everyone
                      for rows in bounded]
            low[name], high[name] = torch.stack([b[0] for b in bounds]), torch.stack([b[1] for b in bounds])
            deviations = torch.cat([deviation(values[rows], low[name][clazz], high[name][clazz])
                                    for clazz, rows in enumerate(held_out) if len(rows)] or [torch.zeros(0)])
            mean = deviations.mean() if len(deviations) else torch.tensor(0.0)
            expected[name] = float(mean) if mean > 0 else 1.0
        return {"low": low, "high": high, "expected": expected}

    def score(self, data: ScoreInputs) -> Tensor:
        predicted = data.logits.argmax(dim=1)
        total = torch.zeros(len(predicted), device=predicted.device)
        for name, values in data.layers.items():
            low, high = (self.state[key][name].to(values.device)[predicted] for key in ("low", "high"))
            total += deviation(values[:, : self.params.orders].float(), low, high) / self.state["expected"][name]
        return total
