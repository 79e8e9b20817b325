"""The Python API: ``oodbench.run``, ``oodbench.plan``, ``oodbench.outputs``, ``oodbench.representations`` and
``oodbench.load_results``.

The command line is a thin layer over these functions, so a notebook and ``oodbench run`` go
through the same engine and give the same records::

    import oodbench
    result = oodbench.run(methods=["msp", "energy"], id="cifar10-jpeg", ood=["tin-crop-32"], preset="smoke",
                          catalogs=["../shared/data/catalog.toml"])
    result.records[["method", "ood_dataset", "auroc"]]
    id_scores, ood_scores = result.scores("msp", "tin-crop-32")
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from oodbench.config import RunConfig, default_home, resolve_grid
from oodbench.store import ResultStore

DEFAULT = ...


@dataclass
class RunResult:
    """One finished run: its id, one record per (ID set, backbone, method, OOD set, seed), and what it cost."""

    run_id: str
    records: pd.DataFrame
    #: one configuration per (ID dataset, backbone) of the grid, in command order
    configs: tuple[RunConfig, ...]
    images_forwarded: int
    wall_time_s: float
    stages: str
    notes: list[str] = field(default_factory=list)
    #: images per second achieved by each stage that computed something (training stages: images trained on)
    rates: dict[str, float] = field(default_factory=dict)
    #: this process's rank under ``torchrun``; only rank 0 records, the others' records are empty
    rank: int = 0
    #: per task kind, the tasks computed (not cached) and their seconds; each ``extract`` task is one pass of a split
    #: through a network, whatever number of layers the methods read
    computed: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: the bare rates of the run's network on this device beside the stages that train or extract with it
    #: (random pixels in memory, eager; measured once per network and device)
    bare_rates: dict[str, float] = field(default_factory=dict)

    @property
    def config(self) -> RunConfig:
        """The configuration of the grid's first (ID dataset, backbone); the rest share every other setting."""
        return self.configs[0]

    @property
    def ok(self) -> bool:
        """Whether no method failed and no scores were non-finite ('not attacked' cells are expected)."""
        return bool(self.records["status"].isin(["ok", "not attacked"]).all())

    def scores(self, method: str, ood_dataset: str, seed: int = 0, id_dataset: str | None = None,
               backbone: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The per-sample outlier scores (ID test, OOD set) behind one record, loaded on demand (in a grid,
        ``id_dataset`` and ``backbone`` pick the cell; default: the first configuration's)."""
        id_dataset, backbone = id_dataset or self.config.id_dataset, backbone or self.config.backbone
        records = self.records
        rows = records[(records["method"] == method) & (records["ood_dataset"] == ood_dataset) & (records["seed"] == seed)
                       & (records["id_dataset"] == id_dataset) & (records["backbone"] == backbone)]
        if rows.empty or rows.iloc[0]["status"] == "failed":
            raise KeyError(f"no scores for method '{method}' on '{ood_dataset}' (seed {seed}, ID {id_dataset}, "
                           f"backbone {backbone}) in run {self.run_id}")
        row = rows.iloc[0]
        return np.load(row["id_scores_path"]), np.load(row["ood_scores_path"])

    def table(self) -> str:
        """The MIM-paper layout (AUROC / AUPR-OUT per OOD set) as text, one table per (ID set, backbone)."""
        from oodbench.report.tables import format_terminal

        groups = self.records.groupby(["id_dataset", "backbone"], sort=False)
        return "\n\n".join(format_terminal(records) for _, records in groups)


def _registry(catalogs: Sequence[str | Path], plugins: Sequence[str | Path], sealed: bool = False):
    from oodbench.registry import build_registry

    registry = build_registry(plugins, catalogs, sealed)
    for problem in registry.problems:
        print(f"warning: plugin not loaded: {problem}", file=sys.stderr)
    return registry


def _listed(value: str | Sequence[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _config(registry, say, *, methods, id, ood, preset, results, cache_dir, data_root, command, backbone=None,
            **options) -> tuple[RunConfig, ...]:
    home = default_home()
    return resolve_grid(
        registry, id_datasets=_listed(id), backbones=_listed(backbone), preset=preset, ood=ood, methods=methods, say=say,
        results_dir=Path(results), cache_dir=Path(cache_dir) if cache_dir else home / "cache",
        data_root=Path(data_root) if data_root else home / "data",
        command=command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), **options)


def _say(quiet: bool) -> Callable[[str], None]:
    return (lambda text: None) if quiet else print


def run(methods: Sequence[str] | None = None, id: str | Sequence[str] | None = None, ood: Sequence[str] | None = None,
        preset: str | None = None, *, seeds: Sequence[int] = (0,), params: Mapping[str, Mapping[str, Any]] | None = None,
        variants: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None, backbone: str | Sequence[str] | None = None,
        checkpoint: str | None = None, aux: str | None = None, attacks: Sequence[str] = (), protocol: str = "clean",
        tune: bool = False, tune_ood: str = "uniform", full_spectrum: bool = False, limit: Any = DEFAULT,
        train_limit: Any = DEFAULT,
        epochs: int | None = None, train: bool | None = None, pretrained: bool | None = None, batch_size: int | None = None,
        device: str = "auto",
        precision: str = "auto", compile: bool = True, catalogs: Sequence[str | Path] = (), plugins: Sequence[str | Path] = (),
        results: str | Path = "results", cache_dir: str | Path | None = None, data_root: str | Path | None = None,
        download: bool = True, executor: str = "local", ray_address: str | None = None, quiet: bool = False,
        command: str | None = None, sealed: bool = False, time_budget: str | float | None = None) -> RunResult:
    """Run detectors and return the records.

    ``methods``, ``id``, ``ood`` and ``preset`` as on the command line (``None``: the preset's or
    the ID set's defaults; no preset: ``demo`` without ``id``, else ``paper`` with CUDA and
    ``quick`` without); every other argument overrides a preset value. Several ``id`` sets and / or
    ``backbone`` names make a grid: one plan, shared work done once, records per (ID set, backbone). ``params`` maps a method to
    parameter values (``{"odin": {"eps": 0.002}}``), ``variants`` a label to (method, parameters).
    ``limit`` / ``train_limit``: images per split, ``None`` for all. ``pretrained=False`` trains the backbone with
    its recipe even where the preset would load published weights. ``attacks``: adversarial
    evaluations besides the clean one (``"atom"``, ``"aloe"``, ``"pgd:eps=8/255,steps=40,step=1/255,target=ood"``).
    ``protocol``: whose settings the methods use (``"clean"``, ``"mim-notebook"``). ``tune``: choose
    the hyperparameters of methods that declare a search space on a held-out slice of ID train
    against ``tune_ood``. ``full_spectrum``: the ID set's covariate-shifted sets count as ID (OpenOOD v1.5's
    full-spectrum evaluation). ``executor``: ``"local"`` (this process) or ``"ray"`` (a local Ray instance, or
    the cluster at ``ray_address``). ``sealed``: run the methods' ``fit()`` and ``score()`` in sandboxed
    worker processes (``oodbench.engine.sealed``). ``time_budget``: how long the whole run may take (``"20m"``, or
    seconds): the backbone trains for as many epochs as fit, and every cell names the reduction.
    """
    from oodbench.engine.budget import parse_duration
    from oodbench.engine.runner import run as run_engine

    say = _say(quiet)
    registry = _registry(catalogs, plugins, sealed)
    configs = _config(registry, say, methods=methods, id=id, ood=ood, preset=preset, results=results, cache_dir=cache_dir,
                      data_root=data_root, command=command, seeds=seeds, params=params, variants=variants, backbone=backbone,
                      checkpoint=checkpoint, aux=aux, attacks=attacks, protocol=protocol, tune=tune, tune_ood=tune_ood,
                      full_spectrum=full_spectrum, limit=limit, train_limit=train_limit, epochs=epochs, train=train, pretrained=pretrained, batch_size=batch_size,
                      device=device, precision=precision, compile=compile, download=download, sealed=sealed,
                      time_budget_s=parse_duration(time_budget) if isinstance(time_budget, str) else time_budget)
    outcome = run_engine(configs, registry, say, executor, ray_address)
    return RunResult(outcome.run_id, outcome.results, outcome.configs or configs, outcome.images_forwarded, outcome.wall_time_s, outcome.stages,
                     outcome.notes, outcome.rates, outcome.rank, outcome.computed, outcome.bare_rates)


def plan(methods: Sequence[str] | None = None, id: str | None = None, ood: Sequence[str] | None = None,
         preset: str | None = None, *, catalogs: Sequence[str | Path] = (), plugins: Sequence[str | Path] = (),
         results: str | Path = "results", cache_dir: str | Path | None = None, data_root: str | Path | None = None,
         quiet: bool = False, command: str | None = None, executor: str = "local", ray_address: str | None = None,
         **overrides: Any):
    """The plan of the same arguments as :func:`run`, without running anything or downloading:
    a :class:`~oodbench.engine.planview.PlanView` (``.tasks`` as a DataFrame, ``str()`` as text). With
    ``executor="ray"`` it also shows each task's CPUs and GPUs and the parallelism on the Ray cluster
    at ``ray_address`` (default: a local instance of this machine)."""
    from oodbench.engine.budget import parse_duration
    from oodbench.engine.planview import PlanView
    from oodbench.engine.runner import plan_run, settle_time

    say = _say(quiet)
    registry = _registry(catalogs, plugins, bool(overrides.get("sealed")))
    budget = overrides.pop("time_budget", None)
    options = {"limit": DEFAULT, "train_limit": DEFAULT, **overrides,
               "time_budget_s": parse_duration(budget) if isinstance(budget, str) else budget}
    configs = _config(registry, say, methods=methods, id=id, ood=ood, preset=preset, results=results, cache_dir=cache_dir,
                      data_root=data_root, command=command, **options)
    planned, ctx = plan_run(configs, registry, say)
    if configs[0].time_budget_s is not None:
        _, planned = settle_time(configs, planned, ctx, registry, say, fetch=False)
    return PlanView.of(planned, ctx, registry, executor, ray_address)


def outputs(wanted: Callable[[Any], bool], methods: Sequence[str] | None = None, id: str | None = None,
            ood: Sequence[str] | None = None, preset: str | None = None, *, catalogs: Sequence[str | Path] = (),
            plugins: Sequence[str | Path] = (), cache_dir: str | Path | None = None, data_root: str | Path | None = None,
            quiet: bool = False, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """The outputs of the plan's tasks that ``wanted`` (a predicate on :class:`~oodbench.engine.plan.Task`)
    selects, for the same arguments as :func:`run`: each comes from the cache when a run made it, else
    it is computed with what it depends on. Nothing is recorded. Returns the plan and a dict task id
    -> output (a :class:`~oodbench.engine.context.Network`, ``Extraction``, ``FittedState``, ...)."""
    from oodbench.engine.runner import task_outputs

    say = _say(quiet)
    registry = _registry(catalogs, plugins)
    options = {"limit": DEFAULT, "train_limit": DEFAULT, **overrides}
    configs = _config(registry, say, methods=methods, id=id, ood=ood, preset=preset, results="results", cache_dir=cache_dir,
                      data_root=data_root, command=None, **options)
    return task_outputs(configs, registry, wanted, say)


@dataclass(frozen=True)
class SplitRepresentations:
    """What the shared forward pass gave for one split, as methods read it (host arrays, float32, memory-mapped
    from the cache): ``logits`` ``N x O`` (the ID classes first), ``features`` ``N x D`` (the pooled penultimate
    features the head reads), ``layers`` by ``"<layer>:<reduction>"`` (those the run's methods declared), and
    ``labels`` (``N``, int) for the ID splits only; None for OOD sets."""

    logits: np.ndarray
    features: np.ndarray
    layers: Mapping[str, np.ndarray]
    labels: np.ndarray | None


@dataclass(frozen=True)
class Representations:
    """A run's representations per split (``"<dataset>/<split>"``), from the network of one seed, with its head."""

    #: the checkpoint key of the network
    network: str
    #: the final linear layer over the ID classes: ``logits[:, :K] = features @ head.weight.T + head.bias`` (float32, CPU)
    head: Any
    splits: dict[str, SplitRepresentations]

    def __getitem__(self, split: str) -> SplitRepresentations:
        return self.splits[split]


def representations(methods: Sequence[str] | None = None, id: str | None = None, ood: Sequence[str] | None = None,
                    preset: str | None = None, *, seed: int = 0, catalogs: Sequence[str | Path] = (),
                    plugins: Sequence[str | Path] = (), cache_dir: str | Path | None = None, data_root: str | Path | None = None,
                    quiet: bool = False, **overrides: Any) -> Representations:
    """The logits, features, declared layers and ID labels of every split the run of the same arguments extracts
    with its base network (the ID test split, the OOD sets, and the splits methods fit on), and the network's
    head: from the cache when a run made them, else computed. For checking a method against a reference
    implementation on exactly what the engine hands it."""
    from oodbench.engine.stages.extract import KIND

    def wanted(task) -> bool:
        return task.kind == KIND and task.group is None

    plan, values = outputs(wanted, methods, id, ood, preset, seeds=(seed,), catalogs=catalogs, plugins=plugins,
                           cache_dir=cache_dir, data_root=data_root, quiet=quiet, **overrides)
    splits, network = {}, None
    for task in plan.tasks.values():
        if wanted(task) and task.id in values:
            network = values[task.inputs["network"]]
            split, extraction = values[task.inputs["split"]], values[task.id]
            labelled = len(split) > 0 and int(np.asarray(split.labels).min()) >= 0
            splits[split.label] = SplitRepresentations(extraction.logits, extraction.features, dict(extraction.layers),
                                                       np.asarray(split.labels) if labelled else None)
    if network is None:
        raise ValueError("the run extracts nothing: none of its methods reads logits, features or layers")
    head = network.model.head()
    return Representations(network.key, type(head)(head.weight.cpu(), head.bias.cpu()), splits)


def load_results(path: str | Path = "results", run_id: str | None = None) -> pd.DataFrame:
    """The records of a results store (a results directory or its ``oodbench.sqlite``), of one run or all."""
    path = Path(path)
    store = ResultStore(path if path.suffix == ".sqlite" else path / "oodbench.sqlite").require()
    return store.results(run_id)
