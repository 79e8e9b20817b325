"""``overlap``: the near-duplicate pairs between two splits (data hygiene), cached per pair.

A run checks its auxiliary set against the ID splits and every OOD test set, and the ID splits
against every OOD test set; ``oodbench data overlap A B`` runs the same task for any two sets.
The artifact keeps every pair (``pairs.npy``: first index, second index, Hamming distance) and a few
as thumbnails for the report.
"""

from __future__ import annotations

import base64
import io
import time

import numpy as np
from PIL import Image

from oodbench.data.fingerprint import THRESHOLD, near_duplicates
from oodbench.engine.context import Overlap
from oodbench.engine.estimate import Work
from oodbench.engine.plan import Resources, Task
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash

KIND = "overlap"
#: matched pairs kept as thumbnails, the closest first
EXAMPLES = 6


def shared_source(first: PlannedSplit, second: PlannedSplit) -> str | None:
    """The collection both splits' datasets declare, or None (different, or either unknown)."""
    source = first.spec.source
    return source if source is not None and source == second.spec.source else None


def thumbnail(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _overlap(ctx, first: PlannedSplit, second: PlannedSplit, inputs: dict, key: str, rate: str) -> Overlap:
    def compute(directory) -> dict:
        started = time.perf_counter()
        a, b = inputs["first"], inputs["second"]
        found = near_duplicates(inputs["first_fingerprints"], inputs["second_fingerprints"], a.images, b.images, ctx.compute.device)
        ctx.throughput.record(rate, len(a) + len(b), time.perf_counter() - started)
        np.save(directory / "pairs.npy", np.stack([found.first, found.second, found.distance], axis=1))
        closest = np.argsort(found.distance, kind="stable")[:EXAMPLES]
        examples = [{"first_index": int(found.first[i]), "second_index": int(found.second[i]), "distance": int(found.distance[i]),
                     "correlation": round(float(found.correlation[i]), 4),
                     "first_png": thumbnail(a.images[found.first[i]]), "second_png": thumbnail(b.images[found.second[i]])}
                    for i in closest]
        return {"first": first.label, "second": second.label, "shared_source": shared_source(first, second),
                "pairs": len(found), "threshold": THRESHOLD, "examples": examples, "seconds": time.perf_counter() - started}

    def load(artifact) -> Overlap:
        meta = artifact.meta
        return Overlap(meta["first"], meta["second"], meta["shared_source"], meta["pairs"], meta["threshold"],
                       tuple(meta["examples"]), meta["seconds"])

    return ctx.cache.cached(KIND, key, compute, load)


def plan_overlap(ctx, first: PlannedSplit, second: PlannedSplit, first_fingerprints: Task, second_fingerprints: Task) -> Task:
    """The check of ``first`` against ``second``."""
    key = None if None in (first_fingerprints.key, second_fingerprints.key) else stable_hash(
        {"first": first_fingerprints.key, "second": second_fingerprints.key, "stage": code_closure(__name__),
         "source": shared_source(first, second)})
    inputs = {"first": first.task, "second": second.task, "first_fingerprints": first_fingerprints.id,
              "second_fingerprints": second_fingerprints.id}
    rate = ctx.throughput.key("overlap", "images")
    counts = None if None in (first.count, second.count) else first.count + second.count
    return Task(f"overlap:{first.ident}|{second.ident}", KIND, f"near-duplicates {first.label} ~ {second.label}", key,
                lambda ctx, values: _overlap(ctx, first, second, values, key, rate), inputs=inputs,
                work=Work(rate, counts), resources=Resources(ctx.compute.device.type))
