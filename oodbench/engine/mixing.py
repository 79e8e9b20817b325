"""Mixed, fixed-size scoring batches: why a method cannot tell a split by anything but its own scores.

A method's ``score()`` never sees a whole split. The engine scores the splits of a *round* (the ID
test split and every OOD set a method is evaluated on, or ``--tune``'s two validation splits)
together, in batches of exactly :data:`SCORE_BATCH` rows. Every batch holds ID and OOD rows in a
proportion drawn per batch (the ID rows are spread over the batches with weights ``u``, uniform in
[0.5, 1.5], the OOD rows with weights ``2 - u``; at least one row of each role per batch), its rows
shuffled, the whole layout drawn from a per-run nonce; the number of batches depends on the row
counts alone, so every run of a plan scores the same number of rows. Splits whose scores are cached are not rescored; when only some splits of
a round are missing, their batches are completed with rows of the cached ones (*filler*), so a batch
is never all ID or all OOD. The last batch is padded with filler too: every call has the same size.
Per-sample scores are kept per split and cached per split, so adding an OOD set later scores only
that set.

Batch-independence is checked, not assumed: after a round, a sample of its rows is scored again in
batches of another composition (and filler rows of cached splits are compared with their cached
scores); a per-sample score may move by at most :func:`tolerance` between compositions. A method
that moves more fails its cells with a message saying so, unless it declares itself
``transductive``: then its scores are what its batches made them, its cells are marked, and its
layout is drawn from the round's content instead of the nonce, so that it can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager, Iterable, Sequence

import numpy as np

#: rows in every batch a method scores (a multiple of the inference batch for methods that read images)
SCORE_BATCH = 512
#: rows of a round rescored in other batch compositions to check that scores are per sample
CHECK_ROWS = 256
#: a score may move by this share of the round's score spread (standard deviation) between compositions
RELATIVE_TOLERANCE = 1e-3


def batch_size(inference_batch: int | None = None) -> int:
    """Rows per scoring batch: :data:`SCORE_BATCH`, rounded up to whole inference batches so that a
    method that runs the network sees the same sub-batch sizes in every batch."""
    if not inference_batch:
        return SCORE_BATCH
    return -(-SCORE_BATCH // inference_batch) * inference_batch


@dataclass(frozen=True)
class Part:
    """Rows a round draws from: one split (or its attacked copy), its role, and whether its scores are
    wanted (``kept``) or it only completes batches, with its ``known`` scores to compare against."""

    label: str
    rows: int
    role: str
    kept: bool
    known: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.role not in ("id", "ood"):
            raise ValueError(f"part {self.label}: role must be 'id' or 'ood', not {self.role!r}")


class Rows:
    """The rows of a round's parts, numbered globally in part order."""

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts = list(parts)
        self.offsets = np.concatenate([[0], np.cumsum([p.rows for p in self.parts])]).astype(np.int64)
        self.part_of = np.repeat(np.arange(len(self.parts)), [p.rows for p in self.parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def of(self, index: int) -> np.ndarray:
        """The global numbers of part ``index``'s rows."""
        return np.arange(self.offsets[index], self.offsets[index + 1])

    def local(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(part index, row within the part) of global ``rows``."""
        parts = self.part_of[rows]
        return parts, rows - self.offsets[parts]

    def of_role(self, role: str, kept_only: bool = False) -> np.ndarray:
        chosen = [self.of(i) for i, p in enumerate(self.parts) if p.role == role and (p.kept or not kept_only)]
        return np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)


def _spread(count: int, weights: np.ndarray, caps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``count`` items spread over bins in proportion to ``weights`` (a multinomial draw), none above its cap."""
    out = np.zeros(len(caps), dtype=np.int64)
    while count > 0:
        room = caps - out
        chances = weights * (room > 0)
        drawn = np.minimum(rng.multinomial(count, chances / chances.sum()), room)
        out += drawn
        count -= int(drawn.sum())
    return out


def layout(rows: Rows, size: int, rng: np.random.Generator, only: np.ndarray | None = None) -> list[np.ndarray]:
    """Batches of exactly ``size`` global row numbers that place every row of the kept parts (or the
    rows ``only``) once, mixed with filler drawn from all parts of each role (see the module).

    The number of batches depends on the row counts alone, ``ceil(rows / (size - 1))`` while both roles
    exist; what is drawn is which rows go together and in what proportion."""
    pools = {role: rows.of_role(role) for role in ("id", "ood")}
    share = len(pools["id"]) / max(1, len(pools["id"]) + len(pools["ood"]))
    kept = {role: rng.permutation(rows.of_role(role, kept_only=True) if only is None else only[np.isin(only, pools[role])])
            for role in ("id", "ood")}
    both = bool(len(pools["id"]) and len(pools["ood"]))
    total = len(kept["id"]) + len(kept["ood"])
    count = -(-total // (size - 1 if both else size))
    if count == 0:
        return []
    u = rng.uniform(0.5, 1.5, count)
    ids = _spread(len(kept["id"]), u, np.full(count, size - (1 if both else 0)), rng)
    oods = _spread(len(kept["ood"]), 2 - u, size - np.maximum(ids, 1 if both else 0), rng)
    starts = {"id": np.concatenate([[0], np.cumsum(ids)]), "ood": np.concatenate([[0], np.cumsum(oods)])}
    batches = []
    for b in range(count):
        placed = [kept["id"][starts["id"][b] : starts["id"][b + 1]], kept["ood"][starts["ood"][b] : starts["ood"][b + 1]]]
        free = size - ids[b] - oods[b]
        must = {"id": int(both and ids[b] == 0), "ood": int(both and oods[b] == 0)}
        id_filler = must["id"] + (rng.binomial(free - must["id"] - must["ood"], share * u[b] / (share * u[b] + 1 - share))
                                  if free > must["id"] + must["ood"] and len(pools["id"]) and len(pools["ood"]) else 0)
        if not len(pools["ood"]):
            id_filler = free
        fillers = {"id": id_filler, "ood": free - id_filler}
        for role in ("id", "ood"):
            if fillers[role]:
                placed.append(rng.choice(pools[role], fillers[role]))
        batches.append(rng.permutation(np.concatenate(placed).astype(np.int64)))
    return batches


def tolerance(scores: np.ndarray) -> float:
    """How far a per-sample score may move between batch compositions: :data:`RELATIVE_TOLERANCE` of
    the spread (standard deviation) of the round's finite scores, and at least float32 rounding of
    their range around the median (not of their magnitude: a constant added to every score would
    otherwise widen the tolerance enough to hide a batch term under it)."""
    finite = scores[np.isfinite(scores)]
    spread = float(finite.std()) if finite.size else 0.0
    scale = float(np.abs(finite - np.median(finite)).max()) if finite.size else 0.0
    return RELATIVE_TOLERANCE * spread + 1e-6 * scale


@dataclass(frozen=True)
class Check:
    """What rescoring rows in other compositions found: rows compared, the largest move, the tolerance."""

    rows: int
    deviation: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.deviation <= self.tolerance

    def as_dict(self) -> dict:
        return {"rows": self.rows, "max_deviation": self.deviation, "tolerance": self.tolerance}

    def describe(self) -> str:
        return (f"{self.rows} rows scored again in batches of another composition moved by up to {self.deviation:.4g} "
                f"(tolerance {self.tolerance:.4g}: {RELATIVE_TOLERANCE:g} of the scores' standard deviation)")


class BatchDependent(Exception):
    """A method that does not declare itself transductive scored a sample differently in another batch."""


def _deviation(first: np.ndarray, again: np.ndarray) -> float:
    same = (first == again) | (np.isnan(first) & np.isnan(again))
    moved = np.abs(first - again)
    moved[same] = 0.0
    return float(np.nan_to_num(moved, nan=np.inf).max()) if moved.size else 0.0


#: scores one batch: ``score(batch index, global rows)`` -> one score per row
Scorer = Callable[[int, np.ndarray], np.ndarray]


def score_round(session: Callable[[str], ContextManager[Scorer]], parts: Sequence[Part], size: int, rng: np.random.Generator,
                check: bool, progress: Callable[[Iterable, int], Iterable] | None = None) -> tuple[dict[str, np.ndarray], Check | None]:
    """The scores of every kept part over mixed batches, each scored by the scorer of ``session(group)``:
    one session for the round's batches (group ``"round"``), another for the check's (``"check"``), so
    that a scorer with a state of its own (a sealed worker) starts afresh for the check.
    ``progress(batches, total)`` wraps the round's batches for display. With ``check``, the
    batch-independence check (raises :class:`BatchDependent` when it fails)."""
    rows = Rows(parts)
    values = np.full(len(rows), np.nan, dtype=np.float64)
    seen = np.zeros(len(rows), dtype=bool)
    for index, part in enumerate(rows.parts):
        if part.known is not None:
            values[rows.of(index)] = part.known
            seen[rows.of(index)] = True
    first, again = [], []
    batches = layout(rows, size, rng)

    def run(score: Scorer, index: int, batch: np.ndarray) -> None:
        result = np.asarray(score(index, batch), dtype=np.float64).reshape(-1)
        if result.shape[0] != len(batch):
            raise RuntimeError(f"score() returned {result.shape[0]} scores for a batch of {len(batch)} samples")
        for row, value in zip(batch, result, strict=True):
            if seen[row]:
                first.append(values[row])
                again.append(value)
            else:
                values[row], seen[row] = value, True

    with session("round") as score:
        for index, batch in enumerate(batches if progress is None else progress(batches, len(batches))):
            run(score, index, batch)
    kept = np.concatenate([rows.of(i) for i, p in enumerate(rows.parts) if p.kept] or [np.empty(0, dtype=np.int64)])
    result = None
    if check:
        sample = rng.choice(kept, min(CHECK_ROWS, len(kept)), replace=False)
        with session("check") as score:
            for index, batch in enumerate(layout(rows, size, rng, only=sample), start=len(batches)):
                run(score, index, batch)
        limit = tolerance(values[kept])
        result = Check(len(first), _deviation(np.asarray(first), np.asarray(again)), limit)
        if not result.passed:
            raise BatchDependent(f"scores depend on the batch they are computed in: {result.describe()}; a method must score "
                                 "each sample on its own (no batch statistics, no state carried between batches), or declare "
                                 "`transductive = True` to be evaluated, and marked, as one that uses its batch")
    return {p.label: values[rows.of(i)].astype(np.float32) for i, p in enumerate(rows.parts) if p.kept}, result
