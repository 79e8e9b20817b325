"""``oodbench plan``: every task of a plan, whether it is cached, and the estimated time of the rest.

Estimates come from the throughput measured on this device (``engine/estimate.py``); for a
backbone never run here, a few batches of random pixels measure its forward and training speed
first (eager: compiled trainings run faster than estimated). Tasks whose data is not downloaded
show the download they wait for, and the tasks after them wait too.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from oodbench.engine.estimate import calibrate
from oodbench.engine.plan import Plan
from oodbench.models.checkpoints import build_classifier
from oodbench.report.listing import left_aligned


def _clock(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "?"
    if seconds < 1:
        return "<1s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def _calibrate(plan: Plan, ctx, registry) -> None:
    """Measure each backbone's forward and training throughput here if never measured and needed."""
    pending = {t.work.rate for t in plan.pending() if t.work is not None}
    for part in plan.header["grid"]:
        backbone = registry.backbone(part["backbone"])
        if {ctx.throughput.key("forward", backbone.name), ctx.throughput.key("train", backbone.name)} & pending:
            model = build_classifier(backbone, part["num_classes"])
            calibrate(ctx.throughput, backbone.name, model, backbone.input_size, backbone.channels, part["num_classes"],
                      ctx.compute)
            pending -= {ctx.throughput.key("forward", backbone.name), ctx.throughput.key("train", backbone.name)}


@dataclass
class PlanView:
    plan: Plan
    tasks: pd.DataFrame
    device: str

    @classmethod
    def of(cls, plan: Plan, ctx, registry) -> "PlanView":
        _calibrate(plan, ctx, registry)
        rows = []
        for task in plan.tasks.values():
            cached = task.id in plan.cached
            waits = task.key is None  # its data (or its inputs' data) is not downloaded yet
            rows.append({"kind": task.kind, "task": task.label, "key": (task.key or "")[:12],
                         "status": "cached" if cached else ("waits" if waits else "run"),
                         "estimate_s": 0.0 if cached else ctx.throughput.seconds(task.work),
                         "memory_mb": task.resources.memory_mb, "device": task.resources.device,
                         "needs": task.needs or ("its inputs' downloads" if waits else ""), "depends_on": len(task.inputs)})
        return cls(plan, pd.DataFrame(rows), ctx.compute.describe())

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
        columns = ["kind", "task", "key", "status", "estimate", "memory", "needs"]
        lines += ["", left_aligned(shown[columns]), ""]
        counts = self.tasks["status"].value_counts()
        seconds, unknown = self.remaining_seconds()
        summary = (f"{len(self.tasks)} tasks: {counts.get('cached', 0)} cached, {counts.get('run', 0)} to run"
                   + (f", {counts.get('waits', 0)} waiting for downloads (estimated as if they were there)" if counts.get("waits", 0) else ""))
        pending = counts.get("run", 0) + counts.get("waits", 0)
        estimate = f"estimated time of the rest on this device: {_clock(seconds) if pending else 'none, everything is cached'}"
        if unknown:
            estimate += f" + {unknown} task(s) without a measurement here yet (shown '?')"
        return "\n".join(lines + [summary, estimate])
