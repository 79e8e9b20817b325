"""``fingerprint``: the perceptual fingerprints of one split (:mod:`oodbench.data.fingerprint`),
cached under the split's key, so every overlap check of the split reuses them."""

from __future__ import annotations

import time

import numpy as np

from oodbench.data.arrays import SplitArrays
from oodbench.data.fingerprint import Fingerprints, fingerprints
from oodbench.engine.estimate import Work
from oodbench.engine.plan import Resources, Task
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash

KIND = "fingerprint"


def _fingerprint(ctx, split: SplitArrays, key: str, rate: str) -> Fingerprints:
    def compute(directory) -> dict:
        started = time.perf_counter()
        found = fingerprints(split.images, ctx.compute.device)
        ctx.throughput.record(rate, len(split), time.perf_counter() - started)
        for name in ("descriptors", "hashes", "centroids", "lists"):
            np.save(directory / f"{name}.npy", getattr(found, name))
        return {"split": split.label, "count": len(split), "seconds": time.perf_counter() - started}

    def load(artifact) -> Fingerprints:
        return Fingerprints(*(artifact.array(name) for name in ("descriptors", "hashes", "centroids", "lists")))

    return ctx.cache.cached(KIND, key, compute, load)


def plan_fingerprint(ctx, split: PlannedSplit) -> Task:
    """The fingerprints of ``split`` (planned once per split)."""
    key = None if split.key is None else stable_hash({"split": split.key, "stage": code_closure(__name__)})
    rate = ctx.throughput.key("fingerprint", "images")
    return Task(f"fingerprint:{split.ident}", KIND, f"fingerprints of {split.label}", key,
                lambda ctx, inputs: _fingerprint(ctx, inputs["split"], key, rate),
                inputs={"split": split.task}, work=Work(rate, split.count), resources=Resources(ctx.compute.device.type))
