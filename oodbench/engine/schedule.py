"""How a plan's pending tasks could run in parallel: for ``oodbench plan --executor ray``.

From the tasks' estimated seconds, dependencies and declared resources: the widest step of the
dependency graph (how many tasks could run at once with unlimited workers), the critical path (the
longest chain of estimates: no cluster finishes sooner) and the wall time of a greedy schedule on a
given number of CPUs and GPUs (what a Ray instance of that size would take, as far as the estimates hold).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from oodbench.engine.plan import Plan


@dataclass(frozen=True)
class Parallelism:
    width: int
    critical_path_s: float
    serial_s: float
    scheduled_s: float
    #: most tasks running at once in the greedy schedule
    concurrent: int


def _levels(plan: Plan, pending: set[str]) -> dict[str, int]:
    """The step of each pending task: one more than its latest pending input's (plan order puts inputs first)."""
    level: dict[str, int] = {}
    for task in plan.tasks.values():
        if task.id in pending:
            level[task.id] = 1 + max((level[i] for i in task.inputs.values() if i in level), default=-1)
    return level


def parallelism(plan: Plan, seconds: dict[str, float], cpus: int, gpus: int) -> Parallelism:
    """``seconds``: the estimate of every pending task (cached tasks are done before anything starts)."""
    pending = set(seconds)
    levels = _levels(plan, pending)
    width = max((list(levels.values()).count(n) for n in set(levels.values())), default=0)
    finish: dict[str, float] = {}
    for task_id in levels:  # plan order
        task = plan.tasks[task_id]
        finish[task_id] = seconds[task_id] + max((finish[i] for i in task.inputs.values() if i in finish), default=0.0)
    return Parallelism(width, max(finish.values(), default=0.0), sum(seconds.values()), *_greedy(plan, seconds, cpus, gpus))


def _greedy(plan: Plan, seconds: dict[str, float], cpus: int, gpus: int) -> tuple[float, int]:
    """Wall time and peak concurrency of starting, whenever resources free up, the first ready tasks in plan order."""
    waiting = [t for t in plan.tasks.values() if t.id in seconds]
    done: set[str] = {t for t in plan.tasks if t not in seconds}
    free = {"cpus": cpus, "gpus": gpus}
    running: list[tuple[float, str]] = []
    now, peak = 0.0, 0
    while waiting or running:
        for task in list(waiting):
            need = task.resources
            fits = min(need.cpus, cpus) <= free["cpus"] and need.gpus <= free["gpus"]
            if fits and all(i in done for i in task.inputs.values()):
                waiting.remove(task)
                free["cpus"] -= min(need.cpus, cpus)
                free["gpus"] -= need.gpus
                heapq.heappush(running, (now + seconds[task.id], task.id))
        peak = max(peak, len(running))
        if not running:  # nothing fits at all (a GPU task without GPUs): it would wait forever
            break
        now, task_id = heapq.heappop(running)
        done.add(task_id)
        need = plan.tasks[task_id].resources
        free["cpus"] += min(need.cpus, cpus)
        free["gpus"] += need.gpus
    return now, peak
