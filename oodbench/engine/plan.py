"""A run as data: a DAG of tasks, each with its content key, inputs, resources and estimated cost.

Task kinds: ``materialise`` (decode a dataset split into cached arrays), ``fingerprint`` (a split's
perceptual hashes) and ``overlap`` (near-duplicates between two splits: data hygiene), ``checkpoint`` (load,
download or train the classifier), ``finetune`` (a training-time method's network), ``extract``
(logits and features of a split, shared by all methods), ``tune`` (a method's hyperparameters
chosen on validation data, ``--tune``), ``fit`` (a method's state from the ID
training split), ``score`` (a method's scores of every split it is evaluated on, in mixed batches), ``attack`` (one split's scores under an
adversarial attack), ``metrics`` (one result cell). The kind is also the artifact cache's stage name, so whether a task is cached is one lookup of its key.

:class:`Plan` holds the tasks in an order in which every input comes before its users, and the
result cells the run will record. Executors (``engine/executors``) run a plan; nothing here
computes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from oodbench.engine.estimate import Work

KINDS = ("materialise", "fingerprint", "overlap", "checkpoint", "finetune", "extract", "tune", "fit", "score", "attack", "metrics")


@dataclass(frozen=True)
class Resources:
    """What a task asks of a worker: a device, the memory it holds (data and model state, activations
    excluded) and CPU cores. A cluster executor schedules by it; on ``cuda`` the task takes one GPU."""

    device: str
    memory_mb: float = 0.0
    cpus: int = 1

    @property
    def gpus(self) -> int:
        return 1 if self.device == "cuda" else 0


#: a training step holds the weights, their gradients and the optimiser's momentum
TRAINING_COPIES = 3


def array_mb(rows: int | None, columns: int, itemsize: int = 4) -> float:
    """MiB of a ``rows x columns`` array (0 while the row count is unknown)."""
    return (rows or 0) * columns * itemsize / 2**20


@dataclass
class Task:
    """One stage computation. ``run(ctx, inputs)`` gets the engine context and the outputs of the
    tasks named in ``inputs`` (argument name -> task id) and returns this task's output.

    ``key`` is the content key of the output (None while it depends on data that is not there
    yet, see ``needs``). ``group`` names the method entry whose cells fail when the task fails;
    a task without a group is shared by the whole run, and its failure stops the run.
    """

    id: str
    kind: str
    label: str
    key: str | None
    run: Callable[[Any, dict[str, Any]], Any]
    inputs: dict[str, str] = field(default_factory=dict)
    resources: Resources = Resources("cpu")
    work: Work | None = None
    group: str | None = None
    needs: str | None = None
    #: how to supply what ``needs`` names (a download, a command), for the plan's list of missing data
    fix: str | None = None
    #: called with (ctx, inputs, output) after the task ran, to tell the user what it produced
    announce: Callable[[Any, dict[str, Any], Any], None] | None = None
    #: every process of a data-parallel group runs it (a training's collective steps need them all)
    collective: bool = False
    #: the keys of the artifacts it writes by name, when not one under ``key`` (a scoring round: one per split)
    artifacts: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.id}: unknown kind {self.kind!r}")

    def cached_in(self, cache) -> bool:
        """Whether every artifact the task writes is in ``cache``."""
        keys = self.artifacts.values() if self.artifacts is not None else (self.key,)
        return self.key is not None and all(cache.exists(self.kind, key) for key in keys)


@dataclass(frozen=True)
class Cell:
    """One result row the run records: a method entry x seed x OOD set (x attack), and the tasks
    behind it. ``metrics`` is None for a cell with nothing to compute (a method that cannot be attacked)."""

    method: str
    seed: int
    ood_dataset: str
    metrics: str | None
    #: task ids of the method's own chain (finetune, fit, scores), for its failure and its costs
    chain: tuple[str, ...]
    #: the base network and its ID-test extraction, for rows of a method that failed
    base_network: str
    base_accuracy: str
    static: dict[str, Any]
    #: the overlap (data hygiene) tasks whose findings concern the cell
    checks: tuple[str, ...] = ()
    #: the labels of the ID and the OOD split whose scores the metrics task compares (the ID side: several
    #: labels under full-spectrum evaluation, the test split's first)
    splits: tuple[str | tuple[str, ...], str] = ("", "")


@dataclass
class Plan:
    """The tasks of a run in dependency order, its result cells and a description of the run."""

    tasks: dict[str, Task]
    cells: list[Cell]
    header: dict[str, Any]
    cached: set[str] = field(default_factory=set)

    def add(self, task: Task) -> str:
        """Add ``task`` unless a task with its id exists (shared work is planned once); its id."""
        if task.id not in self.tasks:
            missing = [i for i in task.inputs.values() if i not in self.tasks]
            if missing:
                raise ValueError(f"task {task.id} depends on unplanned tasks {missing}")
            self.tasks[task.id] = task
        return task.id

    def with_inputs(self, ids: set[str]) -> set[str]:
        """``ids`` and every task they depend on, directly or not."""
        needed, stack = set(), list(ids)
        while stack:
            task_id = stack.pop()
            if task_id not in needed:
                needed.add(task_id)
                stack.extend(self.tasks[task_id].inputs.values())
        return needed

    def pending(self) -> list[Task]:
        """Tasks whose output is not in the cache."""
        return [t for t in self.tasks.values() if t.id not in self.cached]
