"""Executors run a :class:`~oodbench.engine.plan.Plan`. ``local`` (in this process, in plan order)
is the default; ``ray`` runs the tasks on a Ray instance or cluster (``ray_executor.py``); both
implement the :class:`Executor` protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Protocol

from oodbench.engine.plan import Plan, Task
from oodbench.errors import ConfigError


@dataclass
class Outcome:
    """What became of a task: its output, or the error that stopped it (its own or an input's)."""

    value: Any = None
    error: str | None = None
    traceback: str = ""
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    #: the task whose failure this is (itself, or the input that failed first)
    failed_task: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor(Protocol):
    """Runs the tasks of a plan (``only`` a subset, when given), given the outcomes already
    ``done``; calls ``on_done(task, outcome)`` as each finishes and returns every outcome.

    A task without a group that raises stops the execution (the exception propagates); a task of
    a method's group that raises fails that task and every task that depends on it.
    """

    name: str

    def execute(self, plan: Plan, ctx, only: Collection[str] | None = None, done: dict[str, Outcome] | None = None,
                on_done: Callable[[Task, Outcome], None] | None = None) -> dict[str, Outcome]: ...


EXECUTORS = ("local", "ray")


def get_executor(name: str, address: str | None = None) -> Executor:
    """The executor ``name``; ``address``: the Ray cluster to join (None: a local Ray instance)."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}'", f"available: {', '.join(EXECUTORS)}")
    if address and name != "ray":
        raise ConfigError(f"--ray-address is for --executor ray, not '{name}'", "add --executor ray, or drop --ray-address")
    if name == "ray":
        from oodbench.engine.executors.ray_executor import RayExecutor, _ray

        _ray()  # a missing extra is an error now, before any work
        return RayExecutor(address)
    from oodbench.engine.executors.local import LocalExecutor

    return LocalExecutor()
