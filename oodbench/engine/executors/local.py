"""The in-process executor: every task in plan order (inputs always come first), one at a time."""

from __future__ import annotations

import resource
import time
import traceback
from typing import Callable, Collection

import torch

from oodbench.engine.execution import Outcome
from oodbench.engine.plan import Plan, Task
from oodbench.faults import reached


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA) or the process's peak resident memory (CPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class LocalExecutor:
    name = "local"

    def execute(self, plan: Plan, ctx, only: Collection[str] | None = None, done: dict[str, Outcome] | None = None,
                on_done: Callable[[Task, Outcome], None] | None = None) -> dict[str, Outcome]:
        outcomes = dict(done or {})
        device = ctx.compute.device
        for task in plan.tasks.values():
            if task.id in outcomes or (only is not None and task.id not in only):
                continue
            failed = next((outcomes[i] for i in task.inputs.values() if not outcomes[i].ok), None)
            if failed is not None:
                outcome = Outcome(error=failed.error, traceback=failed.traceback, failed_task=failed.failed_task)
            else:
                outcome = self._run(task, ctx, {name: outcomes[i].value for name, i in task.inputs.items()}, device)
            outcomes[task.id] = outcome
            if on_done is not None:
                on_done(task, outcome)
        return outcomes

    @staticmethod
    def _run(task: Task, ctx, inputs: dict, device: torch.device) -> Outcome:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        reached(task.kind)
        try:
            value = task.run(ctx, inputs)
        except Exception as error:  # a method's failure fails its cells; shared work stops the run
            if task.group is None:
                raise
            return Outcome(error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc(limit=-3),
                           seconds=time.perf_counter() - started, failed_task=task.id)
        outcome = Outcome(value, seconds=time.perf_counter() - started, peak_memory_mb=peak_memory_mb(device))
        if task.announce is not None:
            task.announce(ctx, inputs, value)
        return outcome
