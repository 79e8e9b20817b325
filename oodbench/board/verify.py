"""``oodbench verify``: re-execute a sample of a recorded run's cells and say whether their metrics are reproduced.

The cells are re-run from the run's recorded configuration (its preset's resolved settings, the epochs a time
budget chose, its protocol) in a fresh artifact cache: the data is decoded and fingerprinted again, the network
extracted, every method fitted and scored anew. Only the run's base network is carried over, as an input
identified by its recorded digest: its artifact is copied from the cache it was trained into when the fresh plan
asks for the same key (same training code, recipe and data), and loaded from that artifact's weights file when the
key changed, so that a post-hoc cell is compared on the same weights. A network that is nowhere to be found is
trained again, and its cells are then held to the training tolerance.

A cell is *reproduced* when every metric and the ID accuracy equal the stored ones exactly, or, for cells of a
stage that is not deterministic (training or fine-tuning a network, a randomly started attack), lie within
:data:`TOLERANCE`. When a cell is not reproduced, each recorded input that differs is named: the data (a split's
content hash, with the files it was read from), the method's code (its closure digest), the checkpoint, the
protocol definition (its version); when none differs, the difference is put down to nondeterminism. Findings are
written to the store's ``verifications`` table, which the leaderboard reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from oodbench import __version__
from oodbench.board.sources import Source
from oodbench.config import RunConfig
from oodbench.errors import ConfigError, DataError, OodbenchError
from oodbench.metrics import METRIC_NAMES
from oodbench.models.checkpoints import STAGE as CHECKPOINT_STAGE
from oodbench.provenance import git_commit
from oodbench.store import json_field

#: the largest absolute metric difference accepted for cells of a stage that is not deterministic
TOLERANCE = 0.02
COMPARED = (*METRIC_NAMES, "id_accuracy")
#: RunConfig fields recorded as lists that the configuration holds as tuples
TUPLES = ("ood", "methods", "seeds", "attacks")


@dataclass
class Check:
    """The finding of one re-executed cell."""

    method: str
    params_hash: str
    ood_dataset: str
    seed: int
    attack: str
    verdict: str
    reason: str
    difference: float | None
    tolerance: float

    def row(self, run_id: str, checked_with: str) -> dict:
        return {"run_id": run_id, **dataclasses.asdict(self), "checked_with": checked_with}


def recorded_config(run: pd.Series) -> tuple[dict, list[dict]]:
    """The run's configuration as :class:`RunConfig` fields, and its grid (ID set, backbone, OOD sets per part)."""
    record = json_field(run["config"])
    if not record:
        raise ConfigError(f"run {run['run_id']} has no recorded configuration", "only runs recorded by oodbench 0.1 or later can be verified")
    names = {f.name for f in dataclasses.fields(RunConfig)}
    fields = {k: (tuple(v) if k in TUPLES else v) for k, v in record.items() if k in names}
    fields["variants"] = {label: (method, overrides) for label, (method, overrides) in fields.get("variants", {}).items()}
    grid = record.get("grid") or [{"id_dataset": fields["id_dataset"], "backbone": fields["backbone"], "ood": list(fields["ood"])}]
    return fields, grid


def sample_cells(results: pd.DataFrame, cells: int | None, run_id: str) -> pd.DataFrame:
    """``cells`` of the run's computed cells (all when None), drawn with a generator seeded by the run id."""
    done = results[results["status"] == "ok"]
    if cells is None or cells >= len(done):
        return done
    seed = int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)
    chosen = np.random.default_rng(seed).choice(len(done), size=cells, replace=False)
    return done.iloc[np.sort(chosen)]


@dataclass(frozen=True)
class Carried:
    """How the run's base network reached the fresh cache."""

    configs: Sequence[RunConfig]
    #: what to say of it in every cell's finding ('' when it was carried over under its own key)
    note: str = ""
    #: the recorded weights are loaded from their file under another key (the cells' checkpoint keys then differ)
    weights_loaded: bool = False
    #: the network was trained again: its cells are held to the training tolerance
    retrained: bool = False


def _carry_network(fields: dict, source_cache: Path, key: str, configs: Sequence[RunConfig], registry,
                   say: Callable[[str], None]) -> Carried:
    """Carry the run's base network ``key`` from ``source_cache`` into the configurations' fresh cache."""
    from oodbench.engine.runner import plan_run

    recorded = source_cache / CHECKPOINT_STAGE / key
    plan, ctx = plan_run(configs, registry, lambda text: None)
    ctx.close()
    planned = {task.key for task in plan.tasks.values() if task.kind == CHECKPOINT_STAGE}
    if key in planned:
        if (recorded / "meta.json").is_file():
            shutil.copytree(recorded, configs[0].cache_dir / CHECKPOINT_STAGE / key)
            return Carried(configs)
        if fields.get("checkpoint") or not fields.get("train", True):
            return Carried(configs)  # a weights file or published weights: loaded again, by their digest
        return Carried(configs, f"the run's network {key[:12]} is not in {source_cache}: it was trained again", retrained=True)
    weights = recorded / "model.pt"
    if weights.is_file():
        say(f"note: the plan's network key is no longer {key[:12]} (training code, recipe or data changed); "
            f"its recorded weights {weights} are loaded instead")
        return Carried([dataclasses.replace(c, checkpoint=str(weights)) for c in configs],
                       f"network key changed since the run ({key[:12]} -> {', '.join(k[:12] for k in planned if k)}), "
                       "recorded weights loaded", weights_loaded=True)
    return Carried(configs, f"the run's network {key[:12]} is not in {source_cache} and the plan's key differs: it was trained again",
                   retrained=True)


def _differences(old: pd.Series, new: pd.Series, old_data: dict, new_data: dict, registry, old_commit: str,
                 weights_carried: bool) -> list[str]:
    """The recorded inputs of a cell that differ between the run and its re-execution (inputs the run did not
    record, as older versions did not, are not compared)."""
    reasons = []
    old_protocol, new_protocol = json_field(old["protocol"]), json_field(new["protocol"])
    for label in dict.fromkeys((old_protocol.get("id_split"), f"{old['ood_dataset']}/test")):
        before, after = old_data.get(label, {}).get("content_hash"), new_data.get(label, {}).get("content_hash")
        if before and before != after:
            name, _, split = label.partition("/")
            where = registry.dataset(name).splits[split].describe() if name in registry.datasets else "no longer declared"
            reasons.append(f"data changed: {label} content hash {before} -> {after} (read from {where})")
    if not reasons and old_protocol.get("data") and old_protocol.get("data") != new_protocol.get("data"):
        reasons.append("data keys changed (not their content): how the splits are read or subsampled changed")
    if old["method_version"] != new["method_version"]:
        reasons.append(f"code changed: method {old['method']} ({str(old['method_version'])[:12]} -> {str(new['method_version'])[:12]}, "
                       f"run at {str(old_commit or 'unrecorded')[:12]}, now {(git_commit() or 'unrecorded')[:12]})")
    if not weights_carried and old["checkpoint"] != new["checkpoint"]:
        reasons.append(f"checkpoint changed: {old['checkpoint'][:12]} -> {new['checkpoint'][:12]}")
    if old_protocol.get("version") and old_protocol.get("version") != new_protocol.get("version"):
        reasons.append(f"protocol definition changed: version {old_protocol.get('version')} -> {new_protocol.get('version')}")
    return reasons


def _compare(old: pd.Series, new: pd.Series | None, tolerance: float, reasons: list[str]) -> Check:
    base = dict(method=old["method"], params_hash=old["params_hash"], ood_dataset=old["ood_dataset"], seed=int(old["seed"]),
                attack=old["attack"] or "", tolerance=tolerance)
    if new is None or new["status"] != "ok":
        why = ([] if reasons else ["not computed again"]) if new is None else [f"failed when re-executed: {new['error']}"]
        return Check(**base, verdict="differs", reason="; ".join([*why, *reasons]), difference=None)
    pairs = [(old[m], new[m]) for m in COMPARED if pd.notna(old[m]) or pd.notna(new[m])]
    difference = max((abs(float(a) - float(b)) if pd.notna(a) and pd.notna(b) else float("inf") for a, b in pairs), default=0.0)
    if difference <= tolerance:
        return Check(**base, verdict="reproduced", reason="; ".join(reasons), difference=difference)
    why = reasons or [f"nondeterminism: the same code, data, network and protocol gave metrics {difference:.2g} apart"]
    return Check(**base, verdict="differs", reason="; ".join(why), difference=difference)


def verify_run(source: Source, run_id: str | None, cells: int | None, catalogs: Sequence[str | Path] = (),
               plugins: Sequence[str | Path] = (), source_cache: Path | None = None, say: Callable[[str], None] = print) -> list[Check]:
    """Re-execute ``cells`` sampled cells of ``run_id`` (default: a bundle's run, else the store's latest complete
    run) in a fresh cache and record the findings in the source's store. The registry is built from the plugin
    directories and catalogs the run recorded (those still there), ``catalogs`` and ``plugins``, and a bundle's method
    folder, sealed when the run was; ``source_cache``: where the run's network
    was cached (default: the run's recorded cache directory)."""
    from oodbench.engine.runner import run as run_engine
    from oodbench.registry import build_registry

    store = source.store.require()
    run_id = run_id or (source.entry or {}).get("run_id") or store.latest_run_id()
    runs = store.runs()
    if run_id is None or run_id not in set(runs["run_id"]):
        raise ConfigError(f"no run {run_id!r} in {store.path}", f"runs there: {', '.join(runs['run_id'].tail(5)) or 'none'}")
    run = runs.set_index("run_id").loc[run_id].copy()
    run["run_id"] = run_id
    fields, grid = recorded_config(run)
    if source.bundle is not None and source.entry.get("checkpoint"):  # the bundle's copy, wherever the bundle now is
        fields["checkpoint"] = str(source.bundle / "checkpoint" / source.entry["checkpoint"])
    recorded = json_field(run["config"]).get("registry", {})
    existing = lambda paths: [path for path in paths if Path(path).exists()]  # noqa: E731  (moved bundles, other machines)
    registry = build_registry([*existing(recorded.get("plugins", [])), *plugins, *source.plugins],
                              [*existing(recorded.get("catalogs", [])), *catalogs], sealed=bool(fields.get("sealed")))
    for problem in registry.problems:
        say(f"warning: plugin not loaded: {problem}")
    provenance = json_field(run["provenance"])
    source_cache = Path(source_cache or fields["cache_dir"])
    results = store.results(run_id)
    chosen = sample_cells(results, cells, run_id)
    if chosen.empty:
        raise ConfigError(f"run {run_id} has no computed cell to verify", "pick a run whose cells have metrics (oodbench report --run ID)")
    checks: list[Check] = []
    scratch = Path(tempfile.mkdtemp(prefix="oodbench-verify-"))
    try:
        for number, ((id_dataset, backbone, seed), group) in enumerate(chosen.groupby(["id_dataset", "backbone", "seed"], sort=False)):
            part = next(g for g in grid if g["id_dataset"] == id_dataset and g["backbone"] == backbone)
            labels = tuple(dict.fromkeys(group["method"]))
            fresh = scratch / f"part{number}"
            config = RunConfig(**{**fields, "id_dataset": id_dataset, "backbone": backbone,
                                  "ood": tuple(o for o in part["ood"] if o in set(group["ood_dataset"])), "methods": labels,
                                  "variants": {k: v for k, v in fields["variants"].items() if k in labels}, "seeds": (int(seed),),
                                  "attacks": fields["attacks"] if (group["attack"].fillna("") != "").any() else (),
                                  "time_budget_s": None, "cache_dir": fresh / "cache", "results_dir": fresh / "results",
                                  "data_root": Path(fields["data_root"]),
                                  "command": f"oodbench verify {run_id}"})
            base = provenance.get("checkpoints", {}).get(f"{id_dataset} / {backbone} / seed {seed}", {}).get("hash")
            carried = _carry_network(fields, source_cache, base, [config], registry, say) if base else Carried([config])
            say(f"verify: re-executing {len(group)} cell(s) of {id_dataset} / {backbone} / seed {seed} in a fresh cache {config.cache_dir}")
            try:
                outcome = run_engine(carried.configs, registry, say)
            except OodbenchError as error:  # the data no longer matches its declaration, a plugin is gone, ...
                why = f"{'data changed' if isinstance(error, DataError) else 'not re-executed'}: {error.message}"
                checks += [_compare(pd.Series(old._asdict()), None, 0.0, [why]) for old in group.itertuples(index=False)]
                continue
            fresh_run = outcome.results
            fresh = _fresh_provenance(config.results_dir, outcome.run_id)
            new_data = fresh.get("datasets", {})
            hardware = _hardware_change(provenance, json_field(run["hardware"]), fresh)
            for old in group.itertuples(index=False):
                old = pd.Series(old._asdict())
                match = fresh_run[(fresh_run["method"] == old["method"]) & (fresh_run["ood_dataset"] == old["ood_dataset"])
                                  & (fresh_run["attack"].fillna("") == (old["attack"] or ""))]
                new = match.iloc[0] if len(match) else None
                stochastic = json_field(old["protocol"]).get("trained_on") is not None or bool(old["attack"]) or carried.retrained
                reasons = [r for r in (carried.note, hardware) if r] + (
                    _differences(old, new, provenance.get("datasets", {}), new_data, registry, run["git_commit"], carried.weights_loaded)
                    if new is not None else [])
                checks.append(_compare(old, new, TOLERANCE if stochastic else 0.0, reasons))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checked_with = f"oodbench {__version__} @ {git_commit() or 'unrecorded'}"
    store.add_verifications([check.row(run_id, checked_with) for check in checks])
    return checks


def _fresh_provenance(results_dir: Path, run_id: str) -> dict:
    """The provenance (datasets, compute) the re-execution recorded in its own store, with its hardware."""
    from oodbench.store import ResultStore

    run = ResultStore(results_dir / "oodbench.sqlite").runs().set_index("run_id").loc[run_id]
    return {**json_field(run["provenance"]), "hardware": json_field(run["hardware"])}


def _hardware_change(provenance: dict, hardware: dict, fresh: dict) -> str:
    """'' when the cells are re-executed on the same kind of device and processor, else what changed (floating-point
    results then need not be bit-identical)."""
    before = (provenance.get("compute"), hardware.get("gpu") or hardware.get("cpu"), hardware.get("torch_threads"))
    now = (fresh.get("compute"), fresh["hardware"].get("gpu") or fresh["hardware"].get("cpu"), fresh["hardware"].get("torch_threads"))
    if not before[0] or before == now:
        return ""
    describe = lambda values: f"{values[0]} on {values[1]}, {values[2]} threads"  # noqa: E731
    return f"other hardware: run on {describe(before)}, re-executed on {describe(now)}"


def format_checks(checks: Sequence[Check], run_id: str) -> str:
    """A table of the findings (what differs for every cell said once, below it), and a line of totals."""
    from oodbench.report.listing import left_aligned

    reasons = [c.reason.split("; ") if c.reason else [] for c in checks]
    common = [r for r in reasons[0] if all(r in mine for mine in reasons)] if reasons else []
    frame = pd.DataFrame([{"method": c.method, "OOD set": c.ood_dataset, "seed": c.seed, "attack": c.attack or "-",
                           "verdict": c.verdict, "max |diff|": "" if c.difference is None else f"{c.difference:.2g}",
                           "tolerance": "exact" if c.tolerance == 0 else f"{c.tolerance:g}",
                           "what differs": "; ".join(r for r in mine if r not in common) or "-"}
                          for c, mine in zip(checks, reasons, strict=True)])
    same = sum(c.verdict == "reproduced" for c in checks)
    lines = [left_aligned(frame), "", *(f"every cell: {reason}" for reason in common),
             f"run {run_id}: {same}/{len(checks)} cells reproduced"]
    return "\n".join(lines)

