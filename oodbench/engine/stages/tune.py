"""``tune``: a method's hyperparameters chosen on validation data (``--tune``).

The method declares a small grid (``Method.search_space``, or ``Method.search_space_under`` its protocol). Every combination is fitted (when the
method fits) on the split its protocol fits on, then scores a held-out slice of the ID training
split and a validation OOD set (``--tune-ood``, never a test OOD set of the run) in mixed batches,
as a run's scores are; the combination with the best AUROC wins, ties going to the first in
grid order, as OpenOOD's automatic parameter search does. Neither the ID test split nor a test OOD
set is ever seen. The output (:class:`Tuned`) is cached; the method's fit and scores take its
chosen values, and every record of the method stores them with the validation sets.

The ID slice is drawn from the training split that fitted methods fit on, and held out of every
fit of a tuned method (the search's and the final one): no fitted method has seen those samples
(KNN would find each one at distance 0), and the records say so. The OOD side is unseen.
"""

from __future__ import annotations

from oodbench.engine.context import Tuned
from oodbench.engine.entries import MethodEntry
from oodbench.engine.inputs import held_out
from oodbench.engine.mixing import Part
from oodbench.engine.plan import Resources, Task
from oodbench.engine.scoring import score_parts, split_rows
from oodbench.engine.stages.fit import encode_state, fit_method
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash
from oodbench.metrics import auroc

KIND = "tune"


def _validation_auroc(ctx, entry: MethodEntry, inputs: dict, seed: int, key: str) -> float:
    network = inputs["network"]
    state = None
    if entry.caps.fits:
        train = inputs["fit_split"]
        state = encode_state(fit_method(ctx, entry, network, train, inputs.get("fit_extraction"), held_out(train, inputs["id"]),
                                        seed, ctx.cache.scratch(KIND, key)), entry.label)
    parts = [Part(side, len(inputs[side]), side, True) for side in ("id", "ood")]
    sources = [split_rows(inputs[side], inputs.get(f"{side}_extraction")) for side in ("id", "ood")]
    combination = stable_hash([key, entry.params])
    scored = score_parts(ctx, entry, network, state, parts, sources, combination, False, f"tune {entry.label}")
    return auroc(scored.values["ood"], scored.values["id"])


def _tune(ctx, entry: MethodEntry, inputs: dict, seed: int, key: str, validation: dict) -> Tuned:
    def compute(directory) -> dict:
        grid = []
        for values in entry.grid():
            grid.append({**values, "auroc": _validation_auroc(ctx, entry.with_params(values), inputs, seed, key)})
        best = max(grid, key=lambda row: row["auroc"])  # the first of equals
        chosen = {name: best[name] for name in entry.search_space}
        ctx.note(f"tune: {entry.label} chose {', '.join(f'{k}={v}' for k, v in chosen.items())} "
                 f"(validation AUROC {best['auroc']:.4f}, {validation['id']} vs {validation['ood']})")
        return {"chosen": chosen, "grid": grid, "validation": validation}

    def load(artifact) -> Tuned:
        meta = artifact.meta
        return Tuned(meta["chosen"], tuple(meta["grid"]), meta["validation"])

    return ctx.cache.cached(KIND, key, compute, load)


def plan_tune(ctx, entry: MethodEntry, network: Task, fit_split: PlannedSplit | None, fit_extraction: Task | None,
              validation_id: tuple[PlannedSplit, Task | None], validation_ood: tuple[PlannedSplit, Task | None],
              seed: int) -> Task:
    """The search of ``entry``'s grid (``entry`` as planned for searching: it reads what any combination reads)."""
    (id_split, id_extraction), (ood_split, ood_extraction) = validation_id, validation_ood
    extractions = [task.key for task in (id_extraction, ood_extraction, fit_extraction) if task is not None]
    parts = [network.key, id_split.key, ood_split.key, *([fit_split.key] if fit_split else []), *extractions]
    key = None if None in parts else stable_hash(
        {**entry.identity(), "grid": entry.grid(), "checkpoint": network.key, "validation": [id_split.key, ood_split.key],
         "fit": fit_split.key if fit_split else None, "extractions": extractions, "precision": ctx.compute.precision,
         "seed": seed, "stage": code_closure(__name__),
         **({"sealed": True} if ctx.isolated else {})})
    inputs = {"network": network.id, "id": id_split.task, "ood": ood_split.task,
              **({"id_extraction": id_extraction.id} if id_extraction else {}),
              **({"ood_extraction": ood_extraction.id} if ood_extraction else {}),
              **({"fit_split": fit_split.task} if fit_split else {}),
              **({"fit_extraction": fit_extraction.id} if fit_extraction else {})}
    sliced = f" ({id_split.count}-image slice)" if id_split.split == "train" else ""
    validation = {"id": f"{id_split.label}{sliced}", "ood": ood_split.label,
                  "metric": "auroc", "grid": {k: list(v) for k, v in entry.search_space.items()}}
    return Task(f"tune:{entry.label}:{network.id}", KIND, f"tune {entry.label} on {id_split.label} vs {ood_split.label} "
                f"({len(entry.grid())} combinations)", key, lambda ctx, values: _tune(ctx, entry, values, seed, key, validation),
                inputs=inputs, resources=Resources(ctx.compute.device.type), group=entry.label)
