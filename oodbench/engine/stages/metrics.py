"""``metrics``: one result cell, the metrics of a method's ID-test and OOD scores.

The cell's metrics, the ID accuracy of the network that scored, and its costs are cached as a
small JSON artifact, so a rerun of a finished run finds every task cached. Non-finite scores are
reported with their counts, never averaged in. Under full-spectrum evaluation the ID side is the
ID test split followed by the covariate-shifted ID sets, and their accuracies join the cell.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from oodbench.engine.context import scored
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


def _metrics(ctx, inputs: dict, key: str, trains: bool, id_label: str | tuple[str, ...], ood_label: str) -> dict:
    def compute(directory) -> dict:
        network, fitted = inputs["network"], inputs.get("fit")
        scored_id, scored_ood = scored(inputs["id"], id_label), scored(inputs["ood"], ood_label)
        shifted = {name[len(CSID):]: value.accuracy for name, value in inputs.items() if name.startswith(CSID)}
        return {
            **metric_cells(scored_id.scores, scored_ood.scores),
            "checkpoint": network.key, "checkpoint_origin": network.origin,
            "id_accuracy": inputs["accuracy"].accuracy, **({"csid_accuracy": shifted} if shifted else {}),
            "train_time_s": network.info.get("train_seconds") if trains else None,
            "fit_time_s": fitted.seconds if fitted is not None else 0.0,
            "score_time_s": scored_id.seconds + scored_ood.seconds,
            "attack_passes": scored_id.passes + scored_ood.passes,
            "n_id": len(scored_id.scores), "n_ood": len(scored_ood.scores),
        }

    return ctx.cache.cached(KIND, key, compute, lambda artifact: dict(artifact.meta))


#: the input names of the covariate-shifted sets' extractions (their accuracies), before each set's name
CSID = "csid:"


def plan_metrics(network: Task, accuracy: Task, score_id: tuple[Task, str | tuple[str, ...]], score_ood: tuple[Task, str],
                 fit: Task | None, trains: bool, group: str, label: str, shifted: Mapping[str, Task] | None = None) -> Task:
    """The cell of the OOD scores ``score_ood`` against the ID scores ``score_id``: each the task that
    scored them (a round, or an attack) and the split's label (for full-spectrum ID, the labels of the ID
    test split and of the covariate-shifted sets). ``shifted``: covariate-shifted set -> its extraction
    through the scoring network, whose accuracy the cell reports."""
    (id_task, id_label), (ood_task, ood_label) = score_id, score_ood
    id_key = [score_key(id_task, one) for one in id_label] if isinstance(id_label, tuple) else score_key(id_task, id_label)
    ood_key = score_key(ood_task, ood_label)
    shifted = dict(shifted or {})
    parts = [network.key, ood_key, *(id_key if isinstance(id_key, list) else [id_key]), *(t.key for t in shifted.values())]
    key = None if None in parts else stable_hash(
        {"network": network.key, "id": id_key, "ood": ood_key, "stage": code_closure(__name__),
         **({"csid": {name: task.key for name, task in shifted.items()}} if shifted else {})})
    inputs = {"network": network.id, "accuracy": accuracy.id, "id": id_task.id, "ood": ood_task.id,
              **({"fit": fit.id} if fit else {}), **{f"{CSID}{name}": task.id for name, task in shifted.items()}}
    id_name = "+".join(id_label) if isinstance(id_label, tuple) else id_label
    return Task(f"metrics:{id_task.id}:{id_name}|{ood_task.id}:{ood_label}", KIND, label, key,
                lambda ctx, values: _metrics(ctx, values, key, trains, id_label, ood_label), inputs=inputs, group=group)


def score_key(task: Task, label: str) -> str | None:
    """The cache key of split ``label``'s scores from ``task``: a round's artifact of that split, else the
    task's own key (an attack's)."""
    return task.key if task.artifacts is None else task.artifacts.get(label)
