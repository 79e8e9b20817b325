"""Figures of the report (matplotlib / seaborn), returned as inline SVG text.

Curves and histograms are drawn from the per-sample scores in the store, for the first seed of
each method; the heatmap and the scatter plots from the stored metrics (means over seeds).
"""

from __future__ import annotations

import io
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from oodbench.metrics import roc_curve  # noqa: E402

ScoreLoader = Callable[[str], np.ndarray]
plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def _svg(figure: plt.Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _first_seed(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[results["status"] == "ok"]
    return ok[ok["seed"] == ok.groupby("method")["seed"].transform("min")]


def _pr_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    curve = roc_curve(positive, negative)
    true_pos = curve.tpr[1:] * positive.size
    precision = true_pos / (true_pos + curve.fpr[1:] * negative.size)
    return curve.tpr[1:], precision


def curves(results: pd.DataFrame, load: ScoreLoader) -> dict[str, str]:
    """Per OOD set: ROC and PR (OOD positive) curves of every method, overlaid."""
    figures = {}
    rows = _first_seed(results)
    for ood, cells in rows.groupby("ood_dataset", sort=False):
        figure, (roc_axes, pr_axes) = plt.subplots(1, 2, figsize=(8.5, 3.6))
        for cell in cells.itertuples():
            id_scores, ood_scores = load(cell.id_scores_path), load(cell.ood_scores_path)
            curve = roc_curve(ood_scores, id_scores)
            roc_axes.plot(curve.fpr, curve.tpr, label=f"{cell.method} ({cell.auroc:.3f})", lw=1.2)
            recall, precision = _pr_curve(ood_scores, id_scores)
            pr_axes.plot(recall, precision, label=f"{cell.method} ({cell.aupr_out:.3f})", lw=1.2)
        roc_axes.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        roc_axes.set(xlabel="false positive rate (ID flagged)", ylabel="true positive rate (OOD caught)", title=f"ROC, {ood}")
        pr_axes.set(xlabel="recall (OOD positive)", ylabel="precision", title=f"PR (AUPR-OUT), {ood}", ylim=(0, 1.02))
        roc_axes.legend(fontsize=7, frameon=False)
        pr_axes.legend(fontsize=7, frameon=False)
        figures[ood] = _svg(figure)
    return figures


#: the share of the pooled scores a histogram may leave out at each end: it spans the 1st to the 99th percentile, so
#: a long tail (Mahalanobis, ViM) does not squeeze every distribution into one bar
TAIL = 0.01


def robust_range(scores: np.ndarray) -> tuple[float, float, int]:
    """(low, high) of a histogram of ``scores`` (the :data:`TAIL` and ``1 - TAIL`` quantiles of the finite ones, or
    their extremes where those coincide) and how many scores fall outside it, non-finite ones included."""
    finite = scores[np.isfinite(scores)]
    if not finite.size:
        return 0.0, 1.0, int(scores.size)
    low, high = (float(v) for v in np.quantile(finite, [TAIL, 1 - TAIL]))
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    return low, high, int(scores.size - ((finite >= low) & (finite <= high)).sum())


def histograms(results: pd.DataFrame, load: ScoreLoader) -> dict[str, str]:
    """Per method: density of its outlier scores on the ID test split and on each OOD set, over the
    :func:`robust_range` of all of them (the figure says how many lie beyond it)."""
    figures = {}
    rows = _first_seed(results)
    for method, cells in rows.groupby("method", sort=False):
        figure, axes = plt.subplots(figsize=(5.2, 3.0))
        id_scores = load(cells.iloc[0]["id_scores_path"])
        everything = np.concatenate([id_scores, *[load(p) for p in cells["ood_scores_path"]]])
        low, high, outside = robust_range(everything)
        bins = np.histogram_bin_edges(everything[np.isfinite(everything)], bins=60, range=(low, high) if high > low else None)
        axes.hist(id_scores, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color="black", label="ID test")
        for cell in cells.itertuples():
            axes.hist(load(cell.ood_scores_path), bins=bins, density=True, histtype="step", lw=1.2, label=cell.ood_dataset)
        axes.set(xlabel="outlier score (higher = more OOD)", ylabel="density", title=method)
        if outside:
            axes.text(0.99, 1.0, f"{outside} of {everything.size} scores beyond the 1st-99th percentile, not drawn",
                      transform=axes.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")
        axes.legend(fontsize=7, frameon=False)
        figures[method] = _svg(figure)
    return figures


def heatmap(mim: pd.DataFrame) -> str:
    """Methods x OOD sets, AUROC (means over seeds)."""
    aurocs = mim.xs("AUROC", axis=1, level=1)
    figure, axes = plt.subplots(figsize=(1.1 * aurocs.shape[1] + 2.5, 0.38 * aurocs.shape[0] + 1.2))
    sns.heatmap(aurocs, annot=True, fmt=".3f", cmap="viridis", vmin=max(0.5, np.nanmin(aurocs.values) - 0.02), vmax=1.0,
                cbar_kws={"label": "AUROC"}, ax=axes, annot_kws={"fontsize": 7})
    axes.set(xlabel="", ylabel="")
    return _svg(figure)


def _scatter(points: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, logx: bool = False) -> str:
    figure, axes = plt.subplots(figsize=(5.2, 3.4))
    axes.scatter(points[x], points[y], s=22)
    for method, row in points.iterrows():
        axes.annotate(method, (row[x], row[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if logx:
        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set(xlabel=xlabel, ylabel=ylabel)
    return _svg(figure)


def cost_vs_auroc(results: pd.DataFrame) -> str:
    """Compute cost (training + fitting + mean scoring time per OOD set) against mean AUROC."""
    ok = results[results["status"] == "ok"]
    per_method = ok.groupby("method", sort=False).agg(
        auroc=("auroc", "mean"), fit=("fit_time_s", "mean"), score=("score_time_s", "mean"), train=("train_time_s", "mean"))
    per_method["cost"] = per_method[["fit", "score", "train"]].fillna(0).sum(axis=1).clip(lower=1e-3)
    return _scatter(per_method, "cost", "auroc", "train + fit + score time per OOD set (s, log scale)", "mean AUROC", logx=True)


def accuracy_vs_auroc(results: pd.DataFrame) -> str:
    """ID accuracy of the scoring network against mean AUROC (training-time methods move both)."""
    ok = results[results["status"] == "ok"]
    per_method = ok.groupby("method", sort=False).agg(auroc=("auroc", "mean"), accuracy=("id_accuracy", "mean"))
    return _scatter(per_method, "accuracy", "auroc", "ID accuracy of the scoring network", "mean AUROC")
