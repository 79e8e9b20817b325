"""Artifacts -> store rows: the only writer of the results store.

A :class:`Recorder` opens the run's row, writes each result cell as its metrics task finishes (a
cell is one transaction: written whole or not at all), reports a method's failure once, and
closes the run with its provenance.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import Any, Mapping, Sequence

from oodbench.api import DatasetSpec, Protocol
from oodbench.config import RunConfig
from oodbench.engine.context import Overlap, Tuned, scored
from oodbench.engine.entries import MethodEntry
from oodbench.engine.execution import Outcome
from oodbench.engine.plan import Cell, Plan, Task
from oodbench.engine.protocol_version import data_version
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure
from oodbench.provenance import config_record, git_commit, hardware, package_versions
from oodbench.store import ResultStore


def static_columns(entry: MethodEntry, seed: int, backbone: str, id_spec: DatasetSpec, grouping: DatasetSpec,
                   id_test: PlannedSplit, ood: PlannedSplit, aux: PlannedSplit | None, fit_split: str | None, protocol: Protocol,
                   precision: str, sealed: bool, shifted: Sequence[str] = (), version: str = "") -> dict:
    """The columns of a result row known before anything runs (``grouping``: the ID spec whose near/far
    lists apply; ``fit_split``: what the method was fitted on; ``sealed``: whether its plugin code ran in
    sandboxed workers; ``shifted``: the covariate-shifted sets on the ID side under full-spectrum
    evaluation; ``version``: the protocol's, :mod:`oodbench.engine.protocol_version`); the rest come from the
    cell's metrics task, or its failure."""
    caps = entry.caps
    return {
        "method": entry.label, "params": dataclasses.asdict(entry.params), "params_hash": entry.params_hash,
        "method_version": code_closure(entry.cls), "backbone": backbone,
        "id_dataset": id_spec.name, "id_stands_for": id_spec.stands_for,
        "ood_dataset": ood.spec.name, "ood_stands_for": ood.spec.stands_for, "ood_group": grouping.ood_group(ood.spec),
        "table_order": entry.cls.table_order, "reduced": entry.reduced, "aux_dataset": entry.aux, "seed": seed, "attack": "",
        "transductive": entry.cls.transductive,
        "protocol": {"name": protocol.name, "version": version, "data": data_version(id_test.key, ood.key),
                     **protocol.record(), "fit_split": fit_split,
                     "reads": caps.describe(entry.fit_split), "id_split": id_test.label, "precision": precision,
                     "trained_on": f"{id_spec.name}/train" if caps.trains else None, "aux_split": aux.label if aux else None,
                     "sealed": sealed, **({"full_spectrum": list(shifted)} if shifted else {})},
    }


class Recorder:
    """Writes the rows of one run as its cells complete."""

    def __init__(self, store: ResultStore, plan: Plan, ctx, done: Mapping[str, Outcome] | None = None) -> None:
        """``done``: the outcomes of tasks run before the recorder (the decoded splits), for the provenance."""
        self.store, self.plan, self.ctx = store, plan, ctx
        self.cells: dict[str, list[Cell]] = {}
        for cell in plan.cells:
            self.cells.setdefault(cell.metrics, []).append(cell)
        self.outcomes: dict[str, Outcome] = dict(done or {})
        self.reported: set[str] = set()
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)

    def start(self, configs: Sequence[RunConfig], sources: Mapping[str, Sequence[str]]) -> str:
        """Open the run's row: the configuration of the grid's first part, what each part changes, and the plugin
        directories and catalog files the registry was built from (``sources``)."""
        grid = [{"id_dataset": c.id_dataset, "backbone": c.backbone, "ood": list(c.ood)} for c in configs]
        self.store.start_run(self.run_id, command=configs[0].command,
                             config={**config_record(configs[0]), "grid": grid, "registry": dict(sources)},
                             versions=package_versions(), git_commit=git_commit(), hardware=hardware())
        for cell in self.cells.get(None, ()):  # nothing to compute: a method that cannot be attacked
            self.store.add_results([{**cell.static, "run_id": self.run_id, "status": "not attacked", "checkpoint": "",
                                     "hygiene": self.hygiene(cell),
                                     "error": "the method declares no differentiable score or surrogate (Capabilities.attack)"}])
        return self.run_id

    def on_done(self, task: Task, outcome: Outcome) -> None:
        self.outcomes[task.id] = outcome
        if not outcome.ok and outcome.failed_task == task.id:
            self._report(task, outcome)
        for cell in self.cells.get(task.id, ()):
            self.store.add_results([self._row(cell, outcome)])

    def _report(self, task: Task, outcome: Outcome) -> None:
        if task.group in self.reported:
            return
        self.reported.add(task.group)
        self.ctx.say(f"error: method {task.group} failed: {outcome.error}\n{outcome.traceback}")
        self.ctx.notes.append(f"method {task.group} failed: {outcome.error}")

    def _value(self, task_id: str) -> Any:
        outcome = self.outcomes.get(task_id)
        return outcome.value if outcome is not None and outcome.ok else None

    def hygiene(self, cell: Cell) -> str:
        """What the data-hygiene checks found that concerns ``cell`` ('' when nothing)."""
        found = [self._value(check) for check in cell.checks]
        return "; ".join(overlap.describe() for overlap in found if overlap is not None and overlap.flagged)

    def tuned(self, cell: Cell) -> dict:
        """The columns ``--tune`` changed: the chosen parameters, and the search in the protocol record."""
        tuned = next((value for value in map(self._value, cell.chain) if isinstance(value, Tuned)), None)
        if tuned is None:
            return {}
        protocol = {**cell.static["protocol"], "tuned": {"chosen": tuned.chosen, "validation": tuned.validation, "grid": list(tuned.grid)}}
        return {"params": {**cell.static["params"], **tuned.chosen}, "protocol": protocol}

    def _row(self, cell: Cell, outcome: Outcome) -> dict:
        row = {**cell.static, "run_id": self.run_id, "hygiene": self.hygiene(cell), **self.tuned(cell)}
        if not outcome.ok:
            network, accuracy = self._value(cell.base_network), self._value(cell.base_accuracy)
            return {**row, "status": "failed", "error": outcome.error, "checkpoint": network.key if network else "",
                    "checkpoint_origin": network.origin if network else None,
                    "id_accuracy": accuracy.accuracy if accuracy else None}
        inputs = self.plan.tasks[cell.metrics].inputs
        scored_id, scored_ood = scored(self._value(inputs["id"]), cell.splits[0]), scored(self._value(inputs["ood"]), cell.splits[1])
        peaks = [self.outcomes[t].peak_memory_mb for t in cell.chain if t in self.outcomes and self.outcomes[t].peak_memory_mb]
        checks = {"id": scored_id.check, "ood": scored_ood.check}
        protocol = {**row["protocol"], "scoring": {"batch_independence": checks if any(checks.values()) else None,
                                                   "transductive": row["transductive"]}}
        return {**row, **outcome.value, "peak_memory_mb": max(peaks, default=None), "protocol": protocol,
                "id_scores_path": self.store.save_scores(scored_id.key, scored_id.scores),
                "ood_scores_path": self.store.save_scores(scored_ood.key, scored_ood.scores)}

    def provenance(self) -> dict:
        """Datasets (content hash, count, notes) and checkpoints (hash, origin, ID accuracy) the run used."""
        datasets, checkpoints = {}, {}
        for task in self.plan.tasks.values():
            value = self._value(task.id)
            if task.kind == "materialise" and value is not None:
                datasets[value.label] = {"content_hash": value.content_hash, "count": len(value), "notes": list(value.notes)}
        for cell in self.plan.cells:
            network, accuracy = self._value(cell.base_network), self._value(cell.base_accuracy)
            if network is not None:
                where = f"{cell.static['id_dataset']} / {cell.static['backbone']} / seed {cell.seed}"
                checkpoints[where] = {"hash": network.key, "origin": network.origin,
                                               "id_accuracy": accuracy.accuracy if accuracy else None, "info": network.info}
        hygiene = [dataclasses.asdict(overlap) for overlap in map(self._value, self.plan.tasks) if isinstance(overlap, Overlap)]
        return {"datasets": datasets, "checkpoints": checkpoints, "compute": self.ctx.compute.describe(),
                "notes": self.ctx.notes, "plan": self.plan.header, "hygiene": hygiene}

    def finish(self, status: str, wall_time_s: float) -> None:
        self.store.finish_run(self.run_id, status, wall_time_s=wall_time_s, images_forwarded=self.ctx.forwarded.images,
                              stages=self.ctx.cache.summary(), provenance=self.provenance())
