"""Executors run a :class:`~oodbench.engine.plan.Plan`. ``local`` (in this process, in plan order)
is the default; ``ray`` runs the tasks on a Ray instance or cluster (``ray_executor.py``); both
implement :class:`oodbench.engine.execution.Executor`."""

from __future__ import annotations

from oodbench.engine.execution import Executor
from oodbench.errors import ConfigError

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
