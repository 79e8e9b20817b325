"""``score``: a method's outlier scores of the ID test split and every OOD set of the run, in one round.

One task per method entry and network. Its splits are scored together in mixed, fixed-size batches
(:mod:`oodbench.engine.mixing` through :func:`oodbench.engine.scoring.score_parts`), so no call sees
a whole split, its size, or a batch of one role, and a score that depends on its batch is caught.
Scores are cached per split, under the fit's key (or the method's identity and network, for methods
without a fit) and the split's key: a split scored before (in another run, beside other OOD sets)
is loaded, not scored again, and completes the batches of the missing ones, so adding an OOD set
scores only that set. A transductive method's scores depend on their batches' companions: its
per-split keys hash the whole round, and its layout is drawn from the round's content.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from oodbench.api import BackboneSpec, Reads
from oodbench.engine.context import ScoredSplit, ScoreRound
from oodbench.engine.entries import MethodEntry
from oodbench.engine.estimate import Work
from oodbench.engine.mixing import SCORE_BATCH, Part
from oodbench.engine.plan import Resources, Task, array_mb
from oodbench.engine.scoring import score_parts, split_rows
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash

KIND = "score"


def _score(ctx, entry: MethodEntry, network, splits: dict, extractions: dict, roles: dict[str, str], fitted, tuned,
           keys: dict[str, str], round_key: str, rate: str) -> ScoreRound:
    entry = entry.tuned_by(tuned)

    def compute(missing: list[str], present: dict) -> dict:
        parts = [Part(label, len(split), roles[label], label in missing,
                      present[label].array("scores") if label in present else None) for label, split in splits.items()]
        sources = [split_rows(split, extractions.get(label)) for label, split in splits.items()]
        scored = score_parts(ctx, entry, network, fitted.blob if fitted is not None else None, parts, sources, round_key,
                             not entry.cls.transductive,
                             f"score {entry.label}")
        ctx.throughput.record(rate, scored.rows, scored.seconds)
        rows = sum(len(splits[label]) for label in missing)

        def writer(label: str):
            def write(directory) -> dict:
                np.save(directory / "scores.npy", scored.values[label])
                return {"method": entry.label, "split": label, "seconds": scored.seconds * len(splits[label]) / rows,
                        "check": scored.check.as_dict() if scored.check is not None else None,
                        "transductive": entry.cls.transductive}
            return write

        return {label: writer(label) for label in missing}

    def load(label: str, artifact) -> ScoredSplit:
        return ScoredSplit(artifact.array("scores"), artifact.meta["seconds"], keys[label], check=artifact.meta.get("check"))

    return ScoreRound(ctx.cache.cached_group(KIND, keys, compute, load))


def plan_score(ctx, entry: MethodEntry, network: Task, splits: Sequence[tuple[PlannedSplit, str]], extractions: dict,
               fit: Task | None, seed: int, backbone: BackboneSpec, row_width: int, tune: Task | None = None) -> Task:
    """The scores of ``splits`` (each with its role, ``id`` or ``ood``) by ``entry`` on ``network`` (after
    ``fit``, when the method fits; ``extractions``: each split's extraction task, when the method reads
    extracted representations; ``row_width``: logits + features per sample), with the parameters
    ``tune`` chose when given."""
    base = fit.key if fit is not None else (None if None in (network.key, *([tune.key] if tune else [])) else stable_hash(
        {**entry.identity(), "checkpoint": network.key, "precision": ctx.compute.precision, "seed": seed,
         **({"tuned": tune.key} if tune else {}), **({"sealed": True} if ctx.isolated else {})}))
    split_keys = [split.key for split, _ in splits]
    together = {"round": sorted(split_keys), "batch": SCORE_BATCH} if entry.cls.transductive else {}
    keys = {} if base is None or None in split_keys else {
        split.label: stable_hash({"fit": base, "split": split.key, "stage": code_closure(__name__, backbone.build), **together})
        for split, _ in splits}
    round_key = stable_hash(sorted(keys.values())) if keys else None
    roles = {split.label: role for split, role in splits}
    rows = None if None in (split.count for split, _ in splits) else sum(split.count for split, _ in splits)
    inputs = {"network": network.id, **({"fit": fit.id} if fit else {}), **({"tune": tune.id} if tune else {})}
    for i, (split, _) in enumerate(splits):
        inputs[f"split{i}"] = split.task
        if extractions.get(split.label) is not None:
            inputs[f"extraction{i}"] = extractions[split.label].id
    labels = [split.label for split, _ in splits]

    def run(ctx, values):
        named = {label: values[f"split{i}"] for i, label in enumerate(labels)}
        extracted = {label: values.get(f"extraction{i}") for i, label in enumerate(labels)}
        return _score(ctx, entry, values["network"], named, extracted, roles, values.get("fit"), values.get("tune"), keys,
                      round_key, rate)

    reads_images = Reads.IMAGES in entry.caps.reads
    rate = ctx.throughput.key("score", f"{entry.cls.name}/{backbone.name}")
    return Task(f"score:{entry.label}:{network.id}", KIND, f"{entry.label} scores {', '.join(labels)}", round_key, run,
                inputs=inputs, work=Work(rate, rows if reads_images else 0, ctx.throughput.key("train", backbone.name)),
                resources=Resources(ctx.compute.device.type, array_mb(rows, row_width)), group=entry.label,
                artifacts=keys or None)
