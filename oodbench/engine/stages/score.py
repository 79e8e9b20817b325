"""``score``: one split's outlier scores from a fresh method instance.

Every split is scored by a new instance of the method, rebuilt from the fitted state, through
:func:`oodbench.engine.inputs.score_inputs` (declared representations only, in a drawn order),
so no method can count its calls or see labels, names or roles. Scores are cached under the
fit's key (or the method's identity and network, for methods without a fit) and the split's key.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from oodbench.api import BackboneSpec, Reads
from oodbench.engine.context import ScoredSplit
from oodbench.engine.entries import MethodEntry
from oodbench.engine.estimate import Work
from oodbench.engine.inputs import sample_order, score_inputs, unpermute
from oodbench.engine.plan import Resources, Task, array_mb
from oodbench.engine.stages.fit import decode_state
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash

KIND = "score"


def _score(ctx, entry: MethodEntry, network, split, extraction, fitted, tuned, seed: int, key: str, rate: str) -> ScoredSplit:
    entry = entry.tuned_by(tuned)

    def compute(directory) -> dict:
        state = decode_state(fitted.blob, ctx.compute.device) if fitted is not None else None
        order = sample_order(key, len(split))
        data = score_inputs(ctx, entry.label, entry.caps, network, split, extraction, order)
        torch.manual_seed(seed)
        started = time.perf_counter()
        values = entry.cls(entry.params, state=state).score(data)
        seconds = time.perf_counter() - started
        values = np.asarray(values.detach().float().cpu().numpy()).reshape(-1)
        if values.shape[0] != len(split):
            raise RuntimeError(f"score() returned {values.shape[0]} scores for {len(split)} samples")
        ctx.throughput.record(rate, len(split), seconds)
        np.save(directory / "scores.npy", unpermute(values, order).astype(np.float32))
        return {"method": entry.label, "split": split.label, "seconds": seconds}

    def load(artifact) -> ScoredSplit:
        return ScoredSplit(artifact.array("scores"), artifact.meta["seconds"], key)

    return ctx.cache.cached(KIND, key, compute, load)


def plan_score(ctx, entry: MethodEntry, network: Task, split: PlannedSplit, extraction: Task | None, fit: Task | None,
               seed: int, backbone: BackboneSpec, row_width: int, tune: Task | None = None) -> Task:
    """The scores of ``split`` by ``entry`` on ``network`` (after ``fit``, when the method fits;
    ``row_width``: logits + features per sample), with the parameters ``tune`` chose when given."""
    base = fit.key if fit is not None else (None if None in (network.key, *([tune.key] if tune else [])) else stable_hash(
        {**entry.identity(), "checkpoint": network.key, "precision": ctx.compute.precision, "seed": seed,
         **({"tuned": tune.key} if tune else {})}))
    key = None if base is None or split.key is None else stable_hash(
        {"fit": base, "split": split.key, "stage": code_closure(__name__, backbone.build)})
    reads_images = Reads.IMAGES in entry.caps.reads
    rate = ctx.throughput.key("score", f"{entry.cls.name}/{backbone.name}")
    inputs = {"network": network.id, "split": split.task, **({"extraction": extraction.id} if extraction else {}),
              **({"fit": fit.id} if fit else {}), **({"tune": tune.id} if tune else {})}
    return Task(f"score:{entry.label}:{network.id}:{split.ident}", KIND, f"{entry.label} scores {split.label}", key,
                lambda ctx, inputs: _score(ctx, entry, inputs["network"], inputs["split"], inputs.get("extraction"),
                                           inputs.get("fit"), inputs.get("tune"), seed, key, rate),
                inputs=inputs, work=Work(rate, split.count if reads_images else 0, ctx.throughput.key("train", backbone.name)),
                resources=Resources(ctx.compute.device.type, array_mb(split.count, row_width)), group=entry.label)
