"""``metrics``: one result cell, the metrics of a method's ID-test and OOD scores.

The cell's metrics, the ID accuracy of the network that scored, and its costs are cached as a
small JSON artifact, so a rerun of a finished run finds every task cached. Non-finite scores are
reported with their counts, never averaged in.
"""

from __future__ import annotations

import numpy as np

from oodbench.engine.plan import Task
from oodbench.hashing import code_closure, stable_hash
from oodbench.metrics import METRIC_NAMES, detection_metrics

KIND = "metrics"


def metric_cells(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict:
    """Metric columns of one cell; non-finite scores are reported, never averaged in."""
    bad_id, bad_ood = int((~np.isfinite(id_scores)).sum()), int((~np.isfinite(ood_scores)).sum())
    cells = {"nonfinite_id": bad_id, "nonfinite_ood": bad_ood}
    if bad_id or bad_ood:
        return {**cells, "status": "nonfinite", "error": f"{bad_id} ID and {bad_ood} OOD scores are NaN or infinite",
                **{name: None for name in METRIC_NAMES}}
    return {**cells, "status": "ok", "error": None, **detection_metrics(id_scores, ood_scores).as_dict()}


def _metrics(ctx, inputs: dict, key: str, trains: bool) -> dict:
    def compute(directory) -> dict:
        network, scored_id, scored_ood, fitted = inputs["network"], inputs["id"], inputs["ood"], inputs.get("fit")
        return {
            **metric_cells(scored_id.scores, scored_ood.scores),
            "checkpoint": network.key, "checkpoint_origin": network.origin,
            "id_accuracy": inputs["accuracy"].accuracy,
            "train_time_s": network.info.get("train_seconds") if trains else None,
            "fit_time_s": fitted.seconds if fitted is not None else 0.0,
            "score_time_s": scored_id.seconds + scored_ood.seconds,
            "attack_passes": scored_id.passes + scored_ood.passes,
            "n_id": len(scored_id.scores), "n_ood": len(scored_ood.scores),
        }

    return ctx.cache.cached(KIND, key, compute, lambda artifact: dict(artifact.meta))


def plan_metrics(network: Task, accuracy: Task, score_id: Task, score_ood: Task, fit: Task | None, trains: bool,
                 group: str, label: str) -> Task:
    """The cell of ``score_ood`` against ``score_id``."""
    parts = (network.key, score_id.key, score_ood.key)
    key = None if None in parts else stable_hash({"network": network.key, "id": score_id.key, "ood": score_ood.key,
                                                  "stage": code_closure(__name__)})
    inputs = {"network": network.id, "accuracy": accuracy.id, "id": score_id.id, "ood": score_ood.id,
              **({"fit": fit.id} if fit else {})}
    return Task(f"metrics:{score_id.id}|{score_ood.id}", KIND, label, key, lambda ctx, values: _metrics(ctx, values, key, trains),
                inputs=inputs, group=group)
