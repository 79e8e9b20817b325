"""The Ray executor (``--executor ray``): the tasks of a plan as Ray tasks, on a local Ray instance or a
cluster (``--ray-address``). Needs the ``ray`` extra: ``pip install oodbench[ray]``.

How a plan runs here:

- the driver (the ``oodbench run`` process) submits a task as soon as its inputs are done, so every
  task whose inputs are ready runs at once, as far as the cluster's resources allow. Each asks for
  what its :class:`~oodbench.engine.plan.Resources` declare: CPUs, a GPU when the run computes on
  CUDA, and the memory its data and model state hold;
- a task's inputs are the Ray objects its input tasks returned: outputs travel through Ray's object
  store, from the worker that made them to the worker that needs them. The driver fetches only what
  it records (metrics, scores, the networks behind the ID accuracy, hygiene findings);
- each worker builds the run's engine context once (device, the artifact cache at the run's
  ``--cache-dir``, data access) and reports back what a task counted: images through the
  classifier, cache hits and misses, notes. Only the driver writes the results store;
- workers compute with the driver's number of intra-op threads, so a plan gives the local
  executor's numbers bit for bit (summation order depends on it); on nodes with many more cores
  than the driver, start the driver with ``OMP_NUM_THREADS`` set to the cores one task should use;
- with ``--cache-dir`` on storage every node sees, a finished stage is never computed twice, also
  across runs; without one, each node caches into its own directory at that path and artifacts
  reach other nodes through the object store only (a rerun then reuses what each node has). A node
  started with ``OODBENCH_NODE_CACHE_DIR`` in its environment (``OODBENCH_NODE_CACHE_DIR=/scratch/cache
  ray start ...``) caches there instead of at the driver's path: its local disk, whatever the driver's
  path is;
- a task whose worker dies (killed, out of memory) is retried by Ray (``MAX_RETRIES``); a method that
  raises fails that method's cells and what depends on them, as with the local executor, and a shared
  task that raises stops the run. The artifact cache's per-key lock keeps retries and concurrent runs
  from writing one key twice;
- progress: a bar of finished tasks (rate, ETA) on the driver; the workers' own bars are silenced.

Plugins loaded from a directory (``--plugins``) are sent to the workers by value, so the workers
need the oodbench package and its dependencies only.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Collection

import torch

from oodbench import faults
from oodbench.engine.execution import Outcome
from oodbench.engine.plan import Plan, Task
from oodbench.errors import ConfigError
from oodbench.progress import progress

#: retries of a task whose worker process died
MAX_RETRIES = 3
#: set in a node's environment: the artifact cache of that node's workers, instead of the driver's --cache-dir
NODE_CACHE_ENV = "OODBENCH_NODE_CACHE_DIR"
#: prefix of the modules the registry loads from plugin directories (registry.load_directory)
PLUGIN_MODULES = "oodbench_plugin_"


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray", "pip install 'oodbench[ray]' (or pip install ray)") from None
    return ray


class RemoteOutcome(Outcome):
    """An outcome whose output stays in Ray's object store until something reads ``value``."""

    def __init__(self, ref: Any, **fields: Any) -> None:
        self.ref = ref
        super().__init__(**fields)

    @property
    def value(self) -> Any:
        if self.ref is None:
            return None
        if not hasattr(self, "_fetched"):
            self._fetched = _ray().get(self.ref)
        return self._fetched

    @value.setter
    def value(self, value: Any) -> None:  # the dataclass initialiser sets None; the output is the reference
        if value is not None:
            raise AttributeError("a remote outcome's value is its Ray object")


#: the engine context of this worker process, per run configuration
_contexts: dict[str, Any] = {}


def _worker_context(config, batch_sizes: dict[str, int], threads: int, sandbox: Any = None):
    from oodbench.engine.context import EngineContext
    from oodbench.hashing import stable_hash

    key = stable_hash({"config": repr(config), "batch": batch_sizes})
    if key not in _contexts:
        if os.environ.get(NODE_CACHE_ENV):  # this node's own cache (docs/cluster.md)
            config = dataclasses.replace(config, cache_dir=Path(os.environ[NODE_CACHE_ENV]))
        # arrays from the object store are read-only; the engine never writes to its inputs
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        torch.set_num_threads(threads)
        ctx = EngineContext.for_run(config, say=lambda text: None)
        if config.sealed:
            from oodbench.engine.sealed import attach

            attach(ctx, sandbox)  # the driver's settings (its plugin files), started here
        ctx.batch_sizes.update(batch_sizes)
        _contexts[key] = ctx
    return _contexts[key]


def _execute(run: Callable, kind: str, config, batch_sizes: dict[str, int], threads: int, sandbox: Any,
             **inputs: Any) -> tuple[Any, dict]:
    """Body of every Ray task: run one task of the plan in this worker; returns its output and a report."""
    from oodbench.engine.executors.local import peak_memory_mb

    ctx = _worker_context(config, batch_sizes, threads, sandbox)
    images, notes = ctx.forwarded.images, len(ctx.notes)
    hits, misses = Counter(ctx.cache.hits), Counter(ctx.cache.misses)
    faults.reached(kind)
    started = time.perf_counter()
    report: dict[str, Any] = {}
    value = None
    try:
        value = run(ctx, inputs)
    except Exception as error:  # the driver decides: a method's cells fail, shared work stops the run
        report = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=-3)}
    report.update(seconds=time.perf_counter() - started, peak_memory_mb=peak_memory_mb(ctx.compute.device),
                  images=ctx.forwarded.images - images, notes=ctx.notes[notes:],
                  hits=dict(Counter(ctx.cache.hits) - hits), misses=dict(Counter(ctx.cache.misses) - misses))
    return value, report


class RayExecutor:
    """Runs a plan's tasks as Ray tasks (see the module documentation)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def _start(self, ray) -> None:
        if ray.is_initialized():
            return
        ray.init(address=self.address, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"OODBENCH_PROGRESS": "0", **faults.settings()}})

    @staticmethod
    def options(task: Task, cluster_memory: float) -> dict:
        """Ray's resource request of ``task``: its CPUs, a GPU when it computes on CUDA, and its memory
        (capped at the cluster's, so an estimate above it cannot leave the task unschedulable)."""
        resources = task.resources
        memory = min(resources.memory_mb * 2**20, 0.9 * cluster_memory) if cluster_memory else 0
        return {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": MAX_RETRIES,
                "retry_exceptions": False, "num_returns": 2, "name": f"{task.kind}:{task.label}"[:120],
                **({"memory": int(memory)} if memory >= 2**20 else {})}

    def execute(self, plan: Plan, ctx, only: Collection[str] | None = None, done: dict[str, Outcome] | None = None,
                on_done: Callable[[Task, Outcome], None] | None = None) -> dict[str, Outcome]:
        ray = _ray()
        self._start(ray)
        for name, module in list(sys.modules.items()):
            if name.startswith(PLUGIN_MODULES):
                ray.cloudpickle.register_pickle_by_value(module)
        outcomes = dict(done or {})
        wanted = [t for t in plan.tasks.values() if t.id not in outcomes and (only is None or t.id in only)]
        refs = {task_id: outcome.ref if isinstance(outcome, RemoteOutcome) else ray.put(outcome.value)
                for task_id, outcome in outcomes.items() if outcome.ok}
        remote = ray.remote(_execute)
        cluster_memory = ray.cluster_resources().get("memory", 0)
        threads = torch.get_num_threads()
        waiting, running = list(wanted), {}

        def finished() -> Any:
            while waiting or running:
                ready = [t for t in waiting if all(i in outcomes for i in t.inputs.values())]
                if not ready and not running:
                    raise RuntimeError(f"tasks {[t.id for t in waiting[:3]]} wait for inputs that are neither done nor selected")
                for task in ready:
                    waiting.remove(task)
                    failed = next((outcomes[i] for i in task.inputs.values() if not outcomes[i].ok), None)
                    if failed is not None:
                        outcomes[task.id] = Outcome(error=failed.error, traceback=failed.traceback, failed_task=failed.failed_task)
                        self._done(task, outcomes[task.id], outcomes, ctx, on_done)
                        yield task
                        continue
                    value, report = remote.options(**self.options(task, cluster_memory)).remote(
                        task.run, task.kind, ctx.config, dict(ctx.batch_sizes), threads, ctx.sealed,
                        **{name: refs[i] for name, i in task.inputs.items()})
                    running[report] = (task, value)
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1)
                task, value = running.pop(ready[0])
                outcomes[task.id] = self._outcome(ray, task, value, ready[0], ctx)
                refs[task.id] = value
                self._done(task, outcomes[task.id], outcomes, ctx, on_done)
                yield task

        for _ in progress(finished(), desc="tasks", total=len(wanted), unit="task"):
            pass
        return outcomes

    @staticmethod
    def _outcome(ray, task: Task, value: Any, report_ref: Any, ctx) -> Outcome:
        try:
            report = ray.get(report_ref)
        except ray.exceptions.RayError as error:  # the worker died more often than it is retried
            report = {"error": f"{type(error).__name__}: {str(error).splitlines()[0]}", "traceback": str(error)}
        ctx.forwarded(report.get("images", 0))
        ctx.cache.hits.update(report.get("hits", {}))
        ctx.cache.misses.update(report.get("misses", {}))
        for note in report.get("notes", ()):
            ctx.note(note)
        if "error" in report:
            if task.group is None:
                raise RuntimeError(f"task {task.id} failed on a Ray worker: {report['error']}\n{report['traceback']}")
            return Outcome(error=report["error"], traceback=report["traceback"], seconds=report.get("seconds", 0.0),
                           failed_task=task.id)
        return RemoteOutcome(value, seconds=report["seconds"], peak_memory_mb=report["peak_memory_mb"])

    @staticmethod
    def _done(task: Task, outcome: Outcome, outcomes: dict[str, Outcome], ctx, on_done) -> None:
        if outcome.ok and task.announce is not None:
            task.announce(ctx, {name: outcomes[i].value for name, i in task.inputs.items()}, outcome.value)
        if on_done is not None:
            on_done(task, outcome)
