"""Bootstrap statistics over test samples: confidence intervals and paired comparisons of AUROC.

A bootstrap replicate draws the ID and the OOD test samples with replacement. Instead of
re-sorting every replicate, each replicate is a vector of multiplicities over the original
samples, and the AUROC of a weighted sample is computed from the scores sorted once:

    AUROC_w = sum_j v_j * (W_below(s_j) + 0.5 * W_tied(s_j)) / (sum_i w_i * sum_j v_j)

with ``w`` the ID and ``v`` the OOD multiplicities and ``W_below`` / ``W_tied`` the ID weight
strictly below / equal to an OOD score. Replicates are drawn from a seeded generator, so the same
seed gives the same intervals, and two methods scored on the same samples can be resampled with
the *same* replicates (a paired bootstrap): their AUROC difference then has its own interval, and
methods whose difference to the best includes 0 are not significantly worse than it.

The FPR at 95% TPR is resampled the same way: the pooled scores are sorted once (descending, ties
grouped), and a replicate's weighted cumulative counts give its TPR at every distinct threshold; its
FPR is read at the first threshold whose TPR reaches 95%, as :func:`oodbench.metrics.fpr_at_tpr` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_REPLICATES = 1000


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def multiplicities(n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``replicates x n`` counts of each sample in a resample of size ``n`` with replacement."""
    draws = rng.integers(0, n, size=(replicates, n))
    offsets = (np.arange(replicates) * n)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=replicates * n).reshape(replicates, n).astype(np.float64)


class AurocBootstrap:
    """AUROC of one (ID, OOD) score pair under weighted resamples (scores: higher = more OOD)."""

    def __init__(self, id_scores: np.ndarray, ood_scores: np.ndarray) -> None:
        id_scores = np.asarray(id_scores, dtype=np.float64)
        ood_scores = np.asarray(ood_scores, dtype=np.float64)
        self.n_id, self.n_ood = id_scores.size, ood_scores.size
        self._id_order = np.argsort(id_scores, kind="mergesort")
        sorted_id = id_scores[self._id_order]
        self._below = np.searchsorted(sorted_id, ood_scores, side="left")
        self._through = np.searchsorted(sorted_id, ood_scores, side="right")

    def auroc(self, id_weights: np.ndarray, ood_weights: np.ndarray) -> np.ndarray:
        """AUROC for each row of ``id_weights`` (``R x n_id``) and ``ood_weights`` (``R x n_ood``)."""
        cumulative = np.concatenate([np.zeros((id_weights.shape[0], 1)), np.cumsum(id_weights[:, self._id_order], axis=1)], axis=1)
        below = cumulative[:, self._below]
        tied = cumulative[:, self._through] - below
        numerator = np.sum(ood_weights * (below + 0.5 * tied), axis=1)
        return numerator / (id_weights.sum(axis=1) * ood_weights.sum(axis=1))

    def point(self) -> float:
        return float(self.auroc(np.ones((1, self.n_id)), np.ones((1, self.n_ood)))[0])


class FprBootstrap:
    """FPR at a TPR of one (positive, negative) score pair under weighted resamples (positives should score
    higher); with unit weights it equals :func:`oodbench.metrics.fpr_at_tpr`."""

    def __init__(self, positive: np.ndarray, negative: np.ndarray, tpr: float = 0.95) -> None:
        positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
        self.n_pos, self.tpr = positive.size, tpr
        scores = np.concatenate([positive, negative])
        self._order = np.argsort(-scores, kind="mergesort")
        ordered = scores[self._order]
        self._last_of_tie = np.r_[np.flatnonzero(np.diff(ordered)), ordered.size - 1]

    def fpr(self, positive_weights: np.ndarray, negative_weights: np.ndarray) -> np.ndarray:
        """The FPR for each row of ``positive_weights`` (``R x n_pos``) and ``negative_weights`` (``R x n_neg``)."""
        weights = np.concatenate([positive_weights, negative_weights], axis=1)[:, self._order]
        is_pos = self._order < self.n_pos
        true_pos = np.cumsum(weights * is_pos, axis=1)[:, self._last_of_tie]
        false_pos = np.cumsum(weights * ~is_pos, axis=1)[:, self._last_of_tie]
        tpr = true_pos / positive_weights.sum(axis=1, keepdims=True)
        first = np.minimum((tpr < self.tpr - 1e-12).sum(axis=1), tpr.shape[1] - 1)
        return false_pos[np.arange(len(first)), first] / negative_weights.sum(axis=1)


def _ood_first(value):
    """``value(positive weights, negative weights)`` for OOD positives, called with (ID weights, OOD weights)."""
    return lambda id_weights, ood_weights: value(ood_weights, id_weights)


#: the metrics :func:`mean_replicates` resamples: each maps (ID scores, OOD scores) to a function of
#: (ID weights, OOD weights) -> one value per replicate
RESAMPLED = {
    "auroc": lambda id_scores, ood_scores: AurocBootstrap(id_scores, ood_scores).auroc,
    "fpr95_ood_pos": lambda id_scores, ood_scores: _ood_first(FprBootstrap(ood_scores, id_scores).fpr),
    "fpr95_id_pos": lambda id_scores, ood_scores: FprBootstrap(-np.asarray(id_scores), -np.asarray(ood_scores)).fpr,
}


def percentile_interval(values: np.ndarray, level: float) -> Interval:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high))


def mean_replicates(
    cells: list[tuple[np.ndarray, np.ndarray]], replicates: int = DEFAULT_REPLICATES, seed: int = 0, chunk: int = 100,
    metric: str = "auroc",
) -> np.ndarray:
    """Bootstrap replicates of the mean of ``metric`` (a key of :data:`RESAMPLED`) over OOD sets that share one ID
    test split.

    ``cells`` holds (ID scores, OOD scores) per OOD set; the ID samples are resampled once per
    replicate and reused for every OOD set, as they are the same samples. Replicates are computed
    ``chunk`` at a time to bound memory; the draws depend only on ``seed`` and the set sizes, so every
    metric of the same cells is resampled with the same replicates.
    """
    rng = np.random.default_rng(seed)
    resampled = [(RESAMPLED[metric](id_scores, ood_scores), np.size(id_scores), np.size(ood_scores)) for id_scores, ood_scores in cells]
    out = []
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        id_weights = multiplicities(resampled[0][1], size, rng)
        total = np.zeros(size)
        for value, _, n_ood in resampled:
            total += value(id_weights, multiplicities(n_ood, size, rng))
        out.append(total / len(resampled))
    return np.concatenate(out)


def mean_auroc_replicates(cells: list[tuple[np.ndarray, np.ndarray]], replicates: int = DEFAULT_REPLICATES, seed: int = 0,
                          chunk: int = 100) -> np.ndarray:
    """:func:`mean_replicates` of the AUROC."""
    return mean_replicates(cells, replicates, seed, chunk)


def confidence_interval(cells: list[tuple[np.ndarray, np.ndarray]], level: float = 0.95,
                        replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean AUROC over the OOD sets of ``cells``."""
    return percentile_interval(mean_auroc_replicates(cells, replicates, seed), level)


def paired_difference(cells_a: list[tuple[np.ndarray, np.ndarray]], cells_b: list[tuple[np.ndarray, np.ndarray]],
                      level: float = 0.95, replicates: int = DEFAULT_REPLICATES, seed: int = 0) -> Interval:
    """Interval of ``mean AUROC(a) - mean AUROC(b)`` when both are resampled on the same samples.

    Both methods must be scored on the same test samples in the same order (the same seed
    yields the same multiplicities for both).
    """
    difference = mean_auroc_replicates(cells_a, replicates, seed) - mean_auroc_replicates(cells_b, replicates, seed)
    return percentile_interval(difference, level)
