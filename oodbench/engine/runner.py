"""A run: plan -> execute -> record.

1. :func:`~oodbench.engine.planner.build_plan` resolves the configuration into tasks (downloading
   missing data first, when allowed);
2. the materialise tasks run first: a data error stops the run before anything is written;
3. the executor runs the rest; the :class:`~oodbench.engine.records.Recorder` writes each result
   cell as it completes and closes the run with its provenance.

Under ``torchrun`` (several processes, ``models/distributed.py``) the first process is the run; the
others plan the same run and take part only in its collective tasks (data-parallel trainings), then
return without recording anything.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from oodbench.config import RunConfig
from oodbench.engine.batching import inference_batch_size
from oodbench.engine.budget import budget_epochs, clock, estimate, slow_warning
from oodbench.engine.context import EngineContext
from oodbench.engine.execution import Outcome
from oodbench.engine.executors import get_executor
from oodbench.engine.plan import Plan, Task
from oodbench.engine.planner import build_plan
from oodbench.engine.planview import calibrate_plan
from oodbench.engine.records import Recorder
from oodbench.engine.sealed import attach as attach_sandbox
from oodbench.errors import ConfigError
from oodbench.models.checkpoints import build_classifier
from oodbench.models.distributed import World, join_from_environment
from oodbench.registry import Registry
from oodbench.store import ResultStore

#: task kinds whose work is counted in images (an attack's in gradient steps on images, a fit's in feature rows)
IMAGE_STAGES = ("materialise", "checkpoint", "finetune", "extract", "score", "attack")


@dataclass
class RunOutcome:
    run_id: str
    results: pd.DataFrame
    images_forwarded: int
    wall_time_s: float
    stages: str
    notes: list[str] = field(default_factory=list)
    #: images per second achieved by each stage that computed something in this run
    rates: dict[str, float] = field(default_factory=dict)
    #: this process's rank under torchrun; only rank 0 records (the others' outcome is empty)
    rank: int = 0
    #: per task kind, the tasks this run computed and their seconds (an ``extract`` task is one pass of a split
    #: through a network, however many layers it keeps)
    computed: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: the configurations that ran (a time budget sets their epochs); empty under torchrun's other ranks
    configs: tuple[RunConfig, ...] = ()
    #: per training or extracting stage, the bare rate of the run's network on this device (one backbone only)
    bare_rates: dict[str, float] = field(default_factory=dict)


def achieved_rates(plan: Plan, outcomes: dict[str, Outcome]) -> dict[str, float]:
    """Images per second per task kind, over the tasks this run computed (not loaded from the cache)."""
    totals: dict[str, list[float]] = {}
    for task in plan.tasks.values():
        outcome = outcomes.get(task.id)
        if task.kind not in IMAGE_STAGES or task.id in plan.cached or outcome is None or not outcome.ok:
            continue
        if task.work is not None and task.work.items and outcome.seconds > 0:
            items, seconds = totals.setdefault(task.kind, [0.0, 0.0])
            totals[task.kind] = [items + task.work.items, seconds + outcome.seconds]
    return {kind: items / seconds for kind, (items, seconds) in totals.items()}


def bare_rates(configs: Sequence[RunConfig], throughput) -> dict[str, float]:
    """The bare training and inference rates of the run's backbone on this device (calibration's, random pixels in
    memory, eager) for the stages that train or extract with it; none for a grid of several backbones."""
    if len({config.backbone for config in configs}) != 1:
        return {}
    stages = {"checkpoint": "bare-train", "extract": "bare-forward"}
    rates = {stage: throughput.rate(throughput.key(kind, configs[0].backbone)) for stage, kind in stages.items()}
    return {stage: rate for stage, rate in rates.items() if rate is not None}


def computed_work(plan: Plan, outcomes: dict[str, Outcome]) -> dict[str, tuple[int, float]]:
    """Per task kind, in plan order: how many tasks this run computed (not loaded from the cache) and their seconds."""
    totals: dict[str, tuple[int, float]] = {}
    for task in plan.tasks.values():
        outcome = outcomes.get(task.id)
        if task.id in plan.cached or outcome is None or not outcome.ok:
            continue
        count, seconds = totals.get(task.kind, (0, 0.0))
        totals[task.kind] = (count + 1, seconds + outcome.seconds)
    return totals


def plan_run(configs: Sequence[RunConfig], registry: Registry, say: Callable[[str], None] = print,
             fetch: bool = False) -> tuple[Plan, EngineContext]:
    """The plan of a grid of ``configs`` (one per ID dataset and backbone) without running it
    (``fetch``: download missing data now)."""
    ctx = EngineContext.for_run(configs[0], say)
    return build_plan(configs, registry, ctx, fetch), ctx


def settle_time(configs: Sequence[RunConfig], plan: Plan, ctx: EngineContext, registry: Registry, say: Callable[[str], None],
                fetch: bool) -> tuple[Sequence[RunConfig], Plan]:
    """Say what the plan will cost on this device before work starts. With a time budget, plan again with the backbone
    epochs that fit it (the cells then name the reduction); without one, warn when the preset's promise is broken."""
    config = configs[0]
    calibrate_plan(plan, ctx, registry)
    found = estimate(plan, ctx.throughput)
    budget = config.time_budget_s
    if budget is not None:
        epochs = budget_epochs(found, budget)
        if found.untimed_training:
            say(f"--time-budget {clock(budget)}: the backbone's training speed is not measured on this device (the "
                "machine was busy when it was timed), so its planned epochs stay; oodbench plan on an idle machine "
                "measures it")
        elif epochs is None:
            say(f"--time-budget {clock(budget)}: no backbone trains in this run (its checkpoint is given, published or "
                "cached), so nothing is fitted to it")
        elif epochs < found.epochs:
            note = f"backbone epochs {epochs} (planned {found.epochs}; --time-budget {clock(budget)})"
            say(f"--time-budget {clock(budget)}: the backbone trains {epochs} of {found.epochs} epochs ({clock(found.epoch_s)} "
                f"each here) beside {clock(found.rest_s)} of other work; every cell is marked as reduced settings")
            configs = tuple(dataclasses.replace(c, epochs=epochs, reduced_note=note) for c in configs)
            plan = build_plan(configs, registry, ctx, fetch)
            found = estimate(plan, ctx.throughput)
        else:
            say(f"--time-budget {clock(budget)}: all {found.epochs} planned epochs fit")
        if found.seconds > budget:
            say(f"warning: even so the run is estimated at {clock(found.seconds)}, over the budget of {clock(budget)}")
    say(found.describe(ctx.compute.describe()))
    expected = registry.preset(config.preset).expected_s
    warning = slow_warning(found, config.preset, expected, ctx.compute.describe()) if expected and budget is None else None
    if warning:
        say(warning)
    return configs, plan


def _materialise(plan: Plan, ctx: EngineContext, registry: Registry, runner, needed: set[str] | None,
                 say: Callable[[str], None]) -> dict[str, Outcome]:
    """Decode the data first (a data error stops everything before work starts), then settle the
    inference batch size of each backbone; returns the materialise tasks' outcomes."""
    data = runner.execute(plan, ctx, only={t.id for t in plan.tasks.values()
                                           if t.kind == "materialise" and (needed is None or t.id in needed)})
    for part in plan.header["grid"]:
        backbone = registry.backbone(part["backbone"])
        if backbone.name in ctx.batch_sizes:
            continue
        if ctx.batch_size is not None:
            ctx.batch_sizes[backbone.name] = ctx.batch_size
            continue
        model = build_classifier(backbone, part["num_classes"])
        ctx.batch_sizes[backbone.name] = inference_batch_size(model, backbone.name, backbone.input_size, backbone.channels,
                                                              ctx.compute, ctx.throughput)
        say(f"inference batch size of {backbone.name}: {ctx.batch_sizes[backbone.name]} (measured on {ctx.compute.describe()}; "
            "--batch-size to set)")
    plan.header["batch_size"] = dict(ctx.batch_sizes)
    return data


def task_outputs(configs: Sequence[RunConfig], registry: Registry, wanted: Callable[[Task], bool],
                 say: Callable[[str], None] = print, executor: str = "local", address: str | None = None) -> tuple[Plan, dict[str, Any]]:
    """The outputs of the tasks ``wanted`` selects, computing (or loading from the cache) only them and
    what they depend on, without recording a run: for diagnostics on a run's networks, extractions
    and fitted states. Returns the plan and the outputs by task id."""
    plan, ctx = plan_run(configs, registry, say, fetch=True)
    needed = plan.with_inputs({t.id for t in plan.tasks.values() if wanted(t)})
    runner = get_executor(executor, address)
    data = _materialise(plan, ctx, registry, runner, needed, say)
    outcomes = runner.execute(plan, ctx, only=needed, done=data)
    failed = next((o for o in outcomes.values() if not o.ok), None)
    if failed is not None:
        raise RuntimeError(f"task {failed.failed_task} failed: {failed.error}")
    return plan, {task_id: outcome.value for task_id, outcome in outcomes.items()}


def _train_beside(configs: Sequence[RunConfig], registry: Registry, world: World) -> RunOutcome:
    """A process of rank > 0: the run's collective tasks (and what they need), in the first process's order."""
    quiet = lambda text: None  # noqa: E731
    plan, ctx = plan_run(configs, registry, quiet, fetch=True)
    needed = plan.with_inputs({t.id for t in plan.tasks.values() if t.collective and t.id not in plan.cached})
    runner = get_executor("local")
    data = _materialise(plan, ctx, registry, runner, needed, quiet)
    runner.execute(plan, ctx, only=needed, done=data)
    return RunOutcome("", pd.DataFrame(), ctx.forwarded.images, 0.0, ctx.cache.summary(), rank=world.rank)


def run(configs: Sequence[RunConfig], registry: Registry, say: Callable[[str], None] = print,
        executor: str = "local", address: str | None = None) -> RunOutcome:
    """Plan, execute and record one run of a grid of ``configs`` (one per ID dataset and backbone; every
    other setting is shared) with ``executor`` (``address``: the Ray cluster of ``ray``); returns its id,
    its result rows and its counters."""
    started = time.time()
    config = configs[0]
    world = join_from_environment()
    if config.time_budget_s is not None and world.size > 1:
        raise ConfigError("--time-budget under torchrun: each process would choose the epochs from its own measurement",
                          "pass --epochs N to every process instead")
    if not world.writer:
        return _train_beside(configs, registry, world)
    store = ResultStore(config.results_dir / "oodbench.sqlite").check()
    ctx = EngineContext.for_run(config, say)
    try:
        if config.sealed:
            attach_sandbox(ctx, registry.sandbox)
            ctx.sealed.start()  # the sandbox sets itself up (seconds) while the engine plans and loads the data
        plan = build_plan(configs, registry, ctx, fetch=True)
        configs, plan = settle_time(configs, plan, ctx, registry, say, fetch=True)
        config = configs[0]
        plan.header["world_size"] = world.size
        for label, aux in plan.header["aux"].items():
            say(f"aux: {label} trains with {aux}" + ("" if config.aux else " (the method's default; --aux NAME to change)"))
        for label, reduced in plan.header["reduced"].items():
            if reduced != config.reduced_note:  # the run's own reduction was said once
                say(f"reduced: {label} runs with {reduced} under preset {config.preset}; its cells are marked")
        runner = get_executor(executor, address)
        data = _materialise(plan, ctx, registry, runner, None, say)
        if ctx.sealed is not None:
            plan.header["sealed"] = ctx.sealed.protection()
            say(f"sealed: fit() and score() run in sandboxed workers ({plan.header['sealed']})")
    except BaseException:  # a plan or data error, a sandbox that cannot start: nothing recorded, nothing left running
        ctx.close()
        raise
    recorder = Recorder(store, plan, ctx, done=data)
    recorder.start(configs, registry.sources)
    status, outcomes = "failed", data
    try:
        outcomes = runner.execute(plan, ctx, done=data, on_done=recorder.on_done)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        wall = time.time() - started
        ctx.close()
        recorder.finish(status, wall)
    return RunOutcome(recorder.run_id, store.results(recorder.run_id), ctx.forwarded.images, wall, ctx.cache.summary(), ctx.notes,
                      achieved_rates(plan, outcomes), computed=computed_work(plan, outcomes), configs=tuple(configs),
                      bare_rates=bare_rates(configs, ctx.throughput))
