"""Bootstrap statistics: the weighted AUROC equals the AUROC of the resampled arrays; ties are ties."""

from __future__ import annotations

import numpy as np
import pytest

from oodbench.metrics import auroc, detection_metrics
from oodbench.report import stats


@pytest.mark.parametrize("tied", [False, True])
def test_weighted_auroc_equals_auroc_of_the_explicit_resample(tied):
    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(0, 1, 300), rng.normal(0.8, 1, 200)
    if tied:
        id_scores, ood_scores = id_scores.round(), ood_scores.round()
    bootstrap = stats.AurocBootstrap(id_scores, ood_scores)
    assert bootstrap.point() == pytest.approx(auroc(ood_scores, id_scores), abs=1e-12)
    draw_id, draw_ood = rng.integers(0, 300, 300), rng.integers(0, 200, 200)
    weights_id = np.bincount(draw_id, minlength=300)[None].astype(float)
    weights_ood = np.bincount(draw_ood, minlength=200)[None].astype(float)
    expected = auroc(ood_scores[draw_ood], id_scores[draw_id])
    assert bootstrap.auroc(weights_id, weights_ood)[0] == pytest.approx(expected, abs=1e-12)


def test_multiplicities_are_resamples_of_size_n():
    counts = stats.multiplicities(50, 20, np.random.default_rng(1))
    assert counts.shape == (20, 50) and (counts.sum(axis=1) == 50).all() and counts.min() >= 0


def test_interval_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(2)
    cells = [(rng.normal(0, 1, 400), rng.normal(1, 1, 300)), (rng.normal(0, 1, 400), rng.normal(2, 1, 100))]
    cells = [(cells[0][0], cells[0][1]), (cells[0][0], cells[1][1])]
    point = np.mean([auroc(o, i) for i, o in cells])
    interval = stats.confidence_interval(cells, replicates=300, seed=0)
    assert interval.contains(point) and interval.high - interval.low < 0.1
    assert interval == stats.confidence_interval(cells, replicates=300, seed=0)


def test_identical_scores_are_tied_and_a_clearly_better_method_is_not():
    rng = np.random.default_rng(3)
    id_scores = rng.normal(0, 1, 500)
    weak = [(id_scores, rng.normal(0.3, 1, 500))]
    same = [(id_scores.copy(), weak[0][1].copy())]
    strong = [(id_scores, weak[0][1] + 3)]
    tie = stats.paired_difference(weak, same, replicates=200)
    assert tie.low == tie.high == 0.0 and tie.contains(0.0)
    assert not stats.paired_difference(strong, weak, replicates=200).contains(0.0)


@pytest.mark.parametrize("metric", ["fpr95_ood_pos", "fpr95_id_pos"])
def test_fpr_bootstrap_matches_the_metric_on_unit_weights_and_on_explicit_resamples(metric):
    """With unit weights the resampled FPR@95 is the metric itself; with multiplicities it is the metric of the
    resample written out (ties included: scores rounded to one decimal)."""
    rng = np.random.default_rng(3)
    id_scores, ood_scores = np.round(rng.normal(0, 1, 80), 1), np.round(rng.normal(1, 1, 60), 1)
    value = stats.RESAMPLED[metric](id_scores, ood_scores)
    unit = value(np.ones((1, 80)), np.ones((1, 60)))[0]
    assert unit == pytest.approx(getattr(detection_metrics(id_scores, ood_scores), metric))
    id_weights, ood_weights = stats.multiplicities(80, 5, rng), stats.multiplicities(60, 5, rng)
    resampled = value(id_weights, ood_weights)
    for row in range(5):
        explicit = detection_metrics(np.repeat(id_scores, id_weights[row].astype(int)), np.repeat(ood_scores, ood_weights[row].astype(int)))
        assert resampled[row] == pytest.approx(getattr(explicit, metric))


def test_every_metric_of_the_same_cells_is_resampled_with_the_same_replicates():
    rng = np.random.default_rng(4)
    cells = [(rng.normal(0, 1, 50), rng.normal(1, 1, 40)), (rng.normal(0, 1, 50), rng.normal(2, 1, 30))]
    auroc = stats.mean_replicates(cells, 200, seed=7)
    assert np.array_equal(auroc, stats.mean_auroc_replicates(cells, 200, seed=7))
    fpr = stats.mean_replicates(cells, 200, seed=7, metric="fpr95_ood_pos")
    assert np.corrcoef(auroc, fpr)[0, 1] < -0.2  # a resample that separates better has a lower FPR
