"""Every metric equals its scikit-learn reference, on random and on heavily tied scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from oodbench import metrics


def _cases():
    rng = np.random.default_rng(0)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        n_id, n_ood = rng.integers(5, 400, size=2)
        id_scores = rng.normal(0, 1, n_id)
        ood_scores = rng.normal(rng.uniform(-0.5, 2), rng.uniform(0.5, 2), n_ood)
        yield f"random{seed}", id_scores, ood_scores
        yield f"tied{seed}", np.round(id_scores, 0), np.round(ood_scores, 0)
    yield "all-tied", np.zeros(50), np.zeros(30)
    yield "separable", np.arange(10.0), np.arange(10.0) + 100


def _sklearn_fpr_at_tpr(labels, scores, level=0.95):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return fpr[np.argmax(tpr >= level - 1e-12)]


def _sklearn_detection_error(labels, scores):
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return np.min(0.5 * (1 - tpr) + 0.5 * fpr)


@pytest.mark.parametrize("name,id_scores,ood_scores", list(_cases()))
def test_metrics_match_sklearn(name, id_scores, ood_scores):
    scores = np.concatenate([id_scores, ood_scores])
    ood_positive = np.concatenate([np.zeros(len(id_scores)), np.ones(len(ood_scores))])
    result = metrics.detection_metrics(id_scores, ood_scores)
    assert result.auroc == pytest.approx(roc_auc_score(ood_positive, scores), abs=1e-12)
    assert result.aupr_out == pytest.approx(average_precision_score(ood_positive, scores), abs=1e-12)
    assert result.aupr_in == pytest.approx(average_precision_score(1 - ood_positive, -scores), abs=1e-12)
    assert result.fpr95_ood_pos == pytest.approx(_sklearn_fpr_at_tpr(ood_positive, scores), abs=1e-12)
    assert result.fpr95_id_pos == pytest.approx(_sklearn_fpr_at_tpr(1 - ood_positive, -scores), abs=1e-12)
    assert result.detection_error == pytest.approx(_sklearn_detection_error(ood_positive, scores), abs=1e-12)


def test_perfect_and_inverted_detectors():
    perfect = metrics.detection_metrics(np.zeros(10), np.ones(10))
    assert (perfect.auroc, perfect.fpr95_ood_pos, perfect.fpr95_id_pos, perfect.detection_error) == (1.0, 0.0, 0.0, 0.0)
    inverted = metrics.detection_metrics(np.ones(10), np.zeros(10))
    assert inverted.auroc == 0.0 and inverted.fpr95_ood_pos == 1.0


def test_fpr_conventions_differ_and_are_named():
    rng = np.random.default_rng(3)
    result = metrics.detection_metrics(rng.normal(0, 1, 500), rng.normal(1, 3, 500))
    assert result.fpr95_ood_pos != pytest.approx(result.fpr95_id_pos, abs=0.01)
    assert "OOD+" in metrics.METRIC_LABELS["fpr95_ood_pos"] and "ID+" in metrics.METRIC_LABELS["fpr95_id_pos"]


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        metrics.detection_metrics(np.array([0.0, np.nan]), np.array([1.0, 2.0]))


def test_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert metrics.accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
