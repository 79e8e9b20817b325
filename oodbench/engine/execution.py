"""What an executor is and what it returns: the :class:`Executor` protocol and a task's :class:`Outcome`.

Its own module so that the modules that consume outcomes (the runner, the recorder) and the
executors that produce them depend on it, and never on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Protocol

from oodbench.engine.plan import Plan, Task


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
