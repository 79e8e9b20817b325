"""Deterministic subsets for ``--limit``: stratified by class for labelled sets, uniform otherwise."""

from __future__ import annotations

import numpy as np


def subset_indices(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of ``limit`` samples, or ``None`` when the split has no more than ``limit``.

    Labelled splits (all labels >= 0) keep each class's share: class ``c`` gets
    ``limit * n_c / n`` samples, rounded by largest remainder, so the subset's class balance
    matches the full split. The same labels, limit and seed always give the same indices.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if limit is None or limit >= n:
        return None
    if limit <= 0:
        raise ValueError(f"--limit must be positive, got {limit}")
    rng = np.random.default_rng(seed)
    if n == 0 or labels.min() < 0:
        return np.sort(rng.choice(n, size=limit, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    exact = limit * counts / n
    take = np.floor(exact).astype(int)
    remainder_order = np.argsort(-(exact - take), kind="stable")
    take[remainder_order[: limit - take.sum()]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take, strict=True) if k > 0
    ]
    return np.sort(np.concatenate(chosen))
