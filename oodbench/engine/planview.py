"""``oodbench plan``: every task of a plan, whether it is cached, and the estimated time of the rest.

Estimates come from the throughput measured on this device (``engine/estimate.py``); for a
backbone never run here, a few batches of random pixels measure its forward and training speed
first (eager: compiled trainings run faster than estimated). Tasks whose data is not downloaded
show the download they wait for, and the tasks after them wait too. For ``--executor ray`` the
view adds the CPUs and GPUs each task asks for and the parallelism the plan allows
(``engine/schedule.py``) on the Ray cluster (``--ray-address``) or a local instance of this machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from oodbench.engine.budget import clock
from oodbench.engine.estimate import calibrate
from oodbench.engine.plan import Plan
from oodbench.engine.schedule import parallelism
from oodbench.models.checkpoints import build_classifier
from oodbench.report.listing import left_aligned


def _clock(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "?"
    return "<1s" if seconds < 1 else clock(seconds)


def calibrate_plan(plan: Plan, ctx, registry) -> None:
    """Measure each backbone's forward (and, when a pending task trains, training) throughput here if never
    measured and needed."""
    pending = {t.work.rate for t in plan.pending() if t.work is not None}
    for part in plan.header["grid"]:
        backbone = registry.backbone(part["backbone"])
        if {ctx.throughput.key("forward", backbone.name), ctx.throughput.key("train", backbone.name)} & pending:
            model = build_classifier(backbone, part["num_classes"])
            busy = calibrate(ctx.throughput, backbone.name, model, backbone.input_size, backbone.channels,
                             part["num_classes"], ctx.compute, train=ctx.throughput.key("train", backbone.name) in pending)
            if busy:
                ctx.note(busy)
            pending -= {ctx.throughput.key("forward", backbone.name), ctx.throughput.key("train", backbone.name)}


def cluster_size(address: str | None) -> tuple[str, int, int]:
    """(where, CPUs, GPUs) of the Ray cluster at ``address``, or of a local Ray instance on this machine."""
    if address:
        import ray

        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
        resources = ray.cluster_resources()
        return f"the Ray cluster at {address}", int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    import torch

    return "a local Ray instance", os.cpu_count() or 1, torch.cuda.device_count()


def _partly_cached(task, cache) -> str:
    """For a task that writes several artifacts (a split's logits and layers, a round's scores per split) of
    which some are cached: which ones it computes."""
    if not task.artifacts or task.key is None:
        return ""
    missing = [name for name, key in task.artifacts.items() if not cache.exists(task.kind, key)]
    if not missing or len(missing) == len(task.artifacts):
        return ""
    return f"computes only {', '.join(missing)} (the rest cached)"


@dataclass
class PlanView:
    plan: Plan
    tasks: pd.DataFrame
    device: str
    #: (where, CPUs, GPUs) of the Ray cluster the plan is shown for; None: the local executor
    cluster: tuple[str, int, int] | None = None

    @classmethod
    def of(cls, plan: Plan, ctx, registry, executor: str = "local", address: str | None = None) -> "PlanView":
        calibrate_plan(plan, ctx, registry)
        rows = []
        for task in plan.tasks.values():
            cached = task.id in plan.cached
            waits = task.key is None  # its data (or its inputs' data) is not downloaded yet
            rows.append({"id": task.id, "kind": task.kind, "task": task.label, "key": (task.key or "")[:12],
                         "status": "cached" if cached else ("waits" if waits else "run"),
                         "estimate_s": 0.0 if cached else ctx.throughput.seconds(task.work),
                         "memory_mb": task.resources.memory_mb, "device": task.resources.device,
                         "cpus": task.resources.cpus, "gpus": task.resources.gpus,
                         "needs": task.needs or ("its inputs' downloads" if waits else _partly_cached(task, ctx.cache)),
                         "depends_on": len(task.inputs)})
        return cls(plan, pd.DataFrame(rows), ctx.compute.describe(), cluster_size(address) if executor == "ray" else None)

    def remaining_seconds(self) -> tuple[float, int]:
        """Estimated seconds of the tasks that will run, and how many of them have no estimate."""
        pending = self.tasks[self.tasks["status"] != "cached"]
        return float(pending["estimate_s"].fillna(0).sum()), int(pending["estimate_s"].isna().sum())

    def __str__(self) -> str:
        header = self.plan.header
        lines = [f"plan: preset {header['preset']}, protocol {header['protocol']}, {len(header['seeds'])} seed(s), on {self.device}"]
        lines += [f"  ID {part['id_dataset']}" + (f" (as {part['stands_for']})" if part["stands_for"] != part["id_dataset"] else "")
                  + f", backbone {part['backbone']}: {len(part['methods'])} method(s) x {len(part['ood'])} OOD set(s)"
                  for part in header["grid"]]
        lines += [f"aux: {label} trains with {aux}" for label, aux in header["aux"].items()]
        lines += [f"reduced: {label} runs with {reduced}" for label, reduced in header["reduced"].items()]
        shown = self.tasks.assign(estimate=[("-" if s == "cached" else _clock(e)) for s, e in zip(self.tasks["status"], self.tasks["estimate_s"], strict=True)],
                                  memory=[f"{m:.0f} MB" if m >= 1 else "" for m in self.tasks["memory_mb"]])
        columns = ["kind", "task", "key", "status", "estimate", *(["cpus", "gpus"] if self.cluster else []), "memory", "needs"]
        lines += ["", left_aligned(shown[columns]), ""]
        counts = self.tasks["status"].value_counts()
        seconds, unknown = self.remaining_seconds()
        summary = (f"{len(self.tasks)} tasks: {counts.get('cached', 0)} cached, {counts.get('run', 0)} to run"
                   + (f", {counts.get('waits', 0)} waiting for downloads (estimated as if they were there)" if counts.get("waits", 0) else ""))
        pending = counts.get("run", 0) + counts.get("waits", 0)
        estimate = f"estimated time of the rest on this device: {_clock(seconds) if pending else 'none, everything is cached'}"
        if unknown:
            estimate += f" + {unknown} task(s) without a measurement here yet (shown '?')"
        return "\n".join(lines + [summary, estimate, *self._parallel(), *self._missing()])

    def _missing(self) -> list[str]:
        """The data the plan waits for: each split that is not there, what is missing, and how to get it."""
        waiting = [task for task in self.plan.tasks.values() if task.key is None and task.needs and not task.inputs]
        if not waiting:
            return []
        lines = ["", "missing data (nothing was downloaded; a run downloads what has a download):"]
        fixes = list(dict.fromkeys(task.fix for task in waiting if task.fix))
        for fix in [*fixes, None]:
            named = [task for task in waiting if task.fix == fix]
            lines += [f"  {task.label}: {task.needs}" for task in named]
            lines += [f"    fix: {fix}"] if fix and named else []
        return lines

    def _parallel(self) -> list[str]:
        """For a Ray cluster: how many tasks can run at once and what that makes of the wall time."""
        if self.cluster is None:
            return []
        where, cpus, gpus = self.cluster
        pending = self.tasks["status"] != "cached"
        seconds = dict(zip(self.tasks["id"][pending], self.tasks["estimate_s"][pending].fillna(0.0), strict=True))
        found = parallelism(self.plan, seconds, cpus, gpus)
        lines = [f"parallelism: up to {found.width} tasks at once (the widest step of the dependency graph); critical path "
                 f"{_clock(found.critical_path_s)} (no cluster finishes sooner)",
                 f"on {where} ({cpus} CPUs, {gpus} GPUs): at most {found.concurrent} tasks at once, estimated wall time "
                 f"{_clock(found.scheduled_s)} against {_clock(found.serial_s)} in one process"]
        if gpus == 0 and (self.tasks["gpus"][pending] > 0).any():
            lines.append("warning: tasks ask for a GPU and the cluster has none: they would never start")
        return lines
