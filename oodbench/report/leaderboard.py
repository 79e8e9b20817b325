"""The leaderboard: methods ranked by mean AUROC over OOD sets, with seed spread and bootstrap intervals.

For each method: the mean over seeds of its average AUROC over the OOD sets, the standard deviation
over seeds and their number ``n``, and a 95% percentile bootstrap interval over the test samples
(each seed's samples resampled, the per-seed replicates averaged). The best method is marked, and
so is every method whose paired bootstrap difference to the best includes 0: scored on the same
samples, it is not significantly worse (such ties are common between close detectors).

Transductive methods (their scores use the batch they are computed in) are listed apart, after the
ranked ones, without a rank: their numbers answer another question than per-sample scores do.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from oodbench.report import stats

ScoreLoader = Callable[[str], np.ndarray]


def _cells(rows: pd.DataFrame, load: ScoreLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(load(r.id_scores_path), load(r.ood_scores_path)) for r in rows.itertuples()]


def _replicates(results: pd.DataFrame, method: str, load: ScoreLoader, replicates: int) -> np.ndarray:
    """Mean-over-seeds replicates of a method's mean AUROC over OOD sets (seed s resampled with RNG seed s)."""
    per_seed = [
        stats.mean_auroc_replicates(_cells(rows.sort_values("ood_dataset"), load), replicates, seed=int(seed))
        for seed, rows in results[results["method"] == method].groupby("seed")
    ]
    return np.mean(per_seed, axis=0)


def leaderboard(results: pd.DataFrame, load: ScoreLoader, replicates: int = stats.DEFAULT_REPLICATES,
                level: float = 0.95) -> pd.DataFrame:
    """Rows ranked by mean AUROC, then the transductive methods unranked; columns rank (None for those),
    mean, std, n, ci_low, ci_high, best, tied, transductive.

    Only methods with a valid cell for every (OOD set, seed) of the selection take part; ``results``
    must hold one ID set's rows with per-sample score paths.
    """
    ok = results[results["status"] == "ok"]
    expected = ok.groupby(["ood_dataset", "seed"]).ngroups
    complete = [m for m, rows in ok.groupby("method", sort=False) if len(rows) == expected]
    ok = ok[ok["method"].isin(complete)]
    per_seed = ok.groupby(["method", "seed"])["auroc"].mean().groupby("method")
    table = pd.DataFrame({"mean": per_seed.mean(), "std": per_seed.std(ddof=1), "n": per_seed.size()})
    apart = set(ok.loc[ok["transductive"].fillna(0).astype(bool), "method"]) if "transductive" in ok else set()
    table["transductive"] = [m in apart for m in table.index]
    table = table.sort_values(["transductive", "mean"], ascending=[True, False])
    draws = {m: _replicates(ok, m, load, replicates) for m in table.index}
    tail = (1 - level) / 2 * 100
    table["ci_low"] = [np.percentile(draws[m], tail) for m in table.index]
    table["ci_high"] = [np.percentile(draws[m], 100 - tail) for m in table.index]
    ranked = [m for m in table.index if m not in apart]
    best = ranked[0] if ranked else None
    table["best"] = table.index == best
    table["tied"] = [
        m in ranked and m != best and stats.percentile_interval(draws[best] - draws[m], level).contains(0.0) for m in table.index
    ]
    table.insert(0, "rank", [ranked.index(m) + 1 if m in ranked else None for m in table.index])
    return table
