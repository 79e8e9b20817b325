"""Mixed, fixed-size scoring batches (engine/mixing.py) with synthetic scores."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest

from oodbench.engine.mixing import BatchDependent, Part, Rows, batch_size, layout, score_round


def _parts(known: dict[str, np.ndarray] | None = None) -> list[Part]:
    known = known or {}
    sizes = {"id": ("id", 300), "near": ("ood", 700), "far": ("ood", 1100)}
    return [Part(label, n, role, label not in known, known.get(label)) for label, (role, n) in sizes.items()]


def test_every_batch_has_the_same_size_both_roles_and_a_drawn_share():
    rows = Rows(_parts())
    batches = layout(rows, 128, np.random.default_rng(0))
    assert {len(b) for b in batches} == {128}
    placed = np.concatenate(batches)
    assert set(placed) == set(range(len(rows)))  # every kept row is scored
    id_share = [np.isin(b, rows.of(0)).mean() for b in batches]
    assert min(id_share) > 0 and max(id_share) < 1  # never a batch of one role
    assert len({round(s, 3) for s in id_share}) > 5  # proportions are drawn, not fixed
    assert abs(np.mean(id_share) - 300 / 2100) < 0.05  # around the round's overall share


def test_a_round_with_cached_splits_scores_only_the_missing_one_and_pads_with_the_others():
    truth = {label: np.arange(n, dtype=np.float32) + 10_000 * i for i, (label, n) in
             enumerate((("id", 300), ("near", 700), ("far", 1100)))}
    parts = _parts({"id": truth["id"], "near": truth["near"]})
    rows = Rows(parts)
    global_truth = np.concatenate([truth["id"], truth["near"], truth["far"]])
    sizes = []

    def score(index, batch):
        sizes.append(len(batch))
        assert np.isin(batch, rows.of(0)).any()  # ID rows complete batches of new OOD rows
        return global_truth[batch]

    scores, check = score_round(lambda group: nullcontext(score), parts, 128, np.random.default_rng(1), check=True)
    assert list(scores) == ["far"] and np.array_equal(scores["far"], truth["far"])
    assert set(sizes) == {128} and check.passed and check.rows > 0


def test_a_score_that_uses_its_batch_fails_the_check_unless_declared_transductive():
    parts = _parts()
    rows = Rows(parts)
    base = np.where(np.isin(np.arange(len(rows)), rows.of(0)), 0.0, 1.0) + np.random.default_rng(2).normal(0, 0.1, len(rows))

    def batch_mean(index, batch):  # a per-sample score plus its batch's mean: a split-level statistic
        return base[batch] + base[batch].mean()

    with pytest.raises(BatchDependent, match="depend on the batch"):
        score_round(lambda group: nullcontext(batch_mean), parts, 128, np.random.default_rng(3), check=True)
    scores, check = score_round(lambda group: nullcontext(batch_mean), parts, 128, np.random.default_rng(3), check=False)
    assert check is None and set(scores) == {"id", "near", "far"}


def test_a_constant_offset_does_not_widen_the_tolerance():
    """A batch term hidden under a large constant: float32 keeps it (steps of 64 at 1e9) and a floor
    relative to the largest |score| would have let it pass."""
    parts = _parts()
    rows = Rows(parts)
    role = np.where(np.isin(np.arange(len(rows)), rows.of(0)), 0.0, 1.0)

    def hidden(index, batch):
        return (1e9 + 500.0 * role[batch].mean() + role[batch]).astype(np.float32)

    with pytest.raises(BatchDependent):
        score_round(lambda group: nullcontext(hidden), parts, 128, np.random.default_rng(6), check=True)
    offset = np.random.default_rng(7).normal(size=len(rows)) + 1e9
    _, check = score_round(lambda group: nullcontext(lambda index, batch: offset[batch].astype(np.float32)), parts, 128,
                           np.random.default_rng(8), check=True)
    assert check.passed  # a per-sample score stays per-sample, offset or not


def test_a_per_sample_score_passes_the_check():
    parts = _parts()
    values = np.random.default_rng(4).normal(size=2100)
    scores, check = score_round(lambda group: nullcontext(lambda index, batch: values[batch]), parts, 128, np.random.default_rng(5), check=True)
    assert check.passed and check.deviation == 0.0 and check.rows >= 256
    assert np.allclose(np.concatenate([scores["id"], scores["near"], scores["far"]]), values.astype(np.float32))


def test_the_batch_is_whole_inference_batches():
    assert batch_size(None) == 512 and batch_size(256) == 512 and batch_size(200) == 600 and batch_size(1000) == 1000


def test_the_check_runs_in_a_session_of_its_own():
    """A scorer with a state of its own (a module variable, a sealed worker) starts afresh for the check:
    a score that drifts with the batches a session has seen fails it."""
    parts = _parts()
    values = np.random.default_rng(6).normal(size=2100)
    groups = []

    def session(group):
        groups.append(group)
        seen = [0]

        def score(index, batch):
            seen[0] += 1
            return values[batch] + 0.5 * seen[0]
        return nullcontext(score)

    with pytest.raises(BatchDependent):
        score_round(session, parts, 128, np.random.default_rng(7), check=True)
    assert groups == ["round", "check"]
