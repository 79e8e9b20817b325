"""Every detection metric of oodbench, in one place, with the positive class made explicit.

Scores follow the oodbench convention: an *outlier score*, higher means more likely OOD.
Definitions (see docs/methods.md, "Metrics"):

- AUROC: area under the ROC curve; symmetric in the choice of positive class.
- AUPR-IN: average precision with ID as the positive class (ranked by ``-score``).
- AUPR-OUT: average precision with OOD as the positive class (ranked by ``score``). The MIM
  paper's "AUPR" column is this one.
- FPR@95TPR(OOD+): share of ID samples flagged as OOD at the first threshold that catches 95% of
  OOD samples (pytorch-ood, OpenOOD convention).
- FPR@95TPR(ID+): share of OOD samples accepted as ID at the first threshold that accepts 95% of
  ID samples (ODIN, Energy, BAL, ATOM papers).
- Detection error: ``min_t 0.5 (1 - TPR(t)) + 0.5 FPR(t)`` (BAL's "Det Err"), symmetric.

Ties between scores are handled as scikit-learn does: tied samples cross a threshold together.
Average precision is the step-wise sum ``sum_k (R_k - R_{k-1}) P_k`` (scikit-learn's
``average_precision_score``), which is the "AUPR" of the Outlier Exposure code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

METRIC_NAMES = ("auroc", "aupr_in", "aupr_out", "fpr95_ood_pos", "fpr95_id_pos", "detection_error")

#: Human-readable column headers of the metrics, naming the positive class where it matters.
METRIC_LABELS = {
    "auroc": "AUROC",
    "aupr_in": "AUPR-IN",
    "aupr_out": "AUPR-OUT",
    "fpr95_ood_pos": "FPR@95TPR(OOD+)",
    "fpr95_id_pos": "FPR@95TPR(ID+)",
    "detection_error": "Det. error",
    "id_accuracy": "ID acc.",
}


@dataclass(frozen=True)
class Curve:
    """Points of a ROC curve, one per distinct threshold, thresholds descending."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _validated(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive = np.asarray(positive, dtype=np.float64).ravel()
    negative = np.asarray(negative, dtype=np.float64).ravel()
    if positive.size == 0 or negative.size == 0:
        raise ValueError(
            f"metrics need scores of both classes; got {positive.size} positive and "
            f"{negative.size} negative samples"
        )
    for name, values in (("positive", positive), ("negative", negative)):
        if not np.isfinite(values).all():
            raise ValueError(
                f"{int((~np.isfinite(values)).sum())} {name} scores are NaN or infinite; "
                "metrics are not computed on non-finite scores"
            )
    return positive, negative


def roc_curve(positive: np.ndarray, negative: np.ndarray) -> Curve:
    """ROC curve of scores where ``positive`` samples should score higher than ``negative``.

    Includes the point (0, 0) at threshold +inf, and one point per distinct score.
    """
    positive, negative = _validated(positive, negative)
    scores = np.concatenate([positive, negative])
    is_pos = np.concatenate([np.ones(positive.size), np.zeros(negative.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, is_pos = scores[order], is_pos[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(is_pos)[last_of_tie]
    false_pos = (last_of_tie + 1) - true_pos
    tpr = np.r_[0.0, true_pos / positive.size]
    fpr = np.r_[0.0, false_pos / negative.size]
    thresholds = np.r_[np.inf, scores[last_of_tie]]
    return Curve(fpr=fpr, tpr=tpr, thresholds=thresholds)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal rule over the tie-aware curve)."""
    curve = roc_curve(positive, negative)
    return float(np.trapezoid(curve.tpr, curve.fpr))


def average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """Average precision of ranking ``positive`` above ``negative`` (step-wise, no interpolation)."""
    curve = roc_curve(positive, negative)
    n_pos, n_neg = np.size(positive), np.size(negative)
    true_pos = curve.tpr[1:] * n_pos
    predicted_pos = true_pos + curve.fpr[1:] * n_neg
    precision = true_pos / predicted_pos
    recall_steps = np.diff(curve.tpr)
    return float(np.sum(recall_steps * precision))


def fpr_at_tpr(positive: np.ndarray, negative: np.ndarray, tpr: float = 0.95) -> float:
    """False positive rate at the first threshold whose true positive rate reaches ``tpr``."""
    curve = roc_curve(positive, negative)
    index = int(np.searchsorted(curve.tpr, tpr - 1e-12, side="left"))
    return float(curve.fpr[min(index, curve.fpr.size - 1)])


def detection_error(positive: np.ndarray, negative: np.ndarray) -> float:
    """Minimum over thresholds of the balanced error ``0.5 (1 - TPR) + 0.5 FPR``."""
    curve = roc_curve(positive, negative)
    return float(np.min(0.5 * (1.0 - curve.tpr) + 0.5 * curve.fpr))


@dataclass(frozen=True)
class DetectionMetrics:
    """All metrics of one (ID, OOD) pair of outlier scores."""

    auroc: float
    aupr_in: float
    aupr_out: float
    fpr95_ood_pos: float
    fpr95_id_pos: float
    detection_error: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def detection_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> DetectionMetrics:
    """Every detection metric for outlier scores of ID and OOD test samples (higher = more OOD)."""
    id_scores = np.asarray(id_scores, dtype=np.float64)
    ood_scores = np.asarray(ood_scores, dtype=np.float64)
    return DetectionMetrics(
        auroc=auroc(ood_scores, id_scores),
        aupr_in=average_precision(-id_scores, -ood_scores),
        aupr_out=average_precision(ood_scores, id_scores),
        fpr95_ood_pos=fpr_at_tpr(ood_scores, id_scores),
        fpr95_id_pos=fpr_at_tpr(-id_scores, -ood_scores),
        detection_error=detection_error(ood_scores, id_scores),
    )


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``argmax`` over the first ``K`` logits against labels in ``0..K-1``."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(np.argmax(logits, axis=1) == labels))
