"""Leaderboard entries: one row per (run, method, parameters), grouped into the tables they can be compared in.

A table holds the entries of one benchmark (the ID set), one protocol version and one backbone, under one evaluation
(full-spectrum runs, whose ID side includes covariate-shifted sets, apart; each adversarial attack apart from clean
inputs); rows of other versions are never put in one table (:mod:`oodbench.engine.protocol_version`). An entry's
numbers are means over its seeds of its cells whose metrics were computed (``status`` ok):

- ID accuracy of the scoring network;
- AUROC averaged over the benchmark's near-OOD sets, its far-OOD sets and all its OOD sets, and FPR@95TPR with OOD
  as the positive class over all sets (OpenOOD's convention), each with a 95% percentile bootstrap interval over
  the test samples: each seed's samples resampled (:func:`oodbench.report.stats.mean_replicates`), the per-seed
  replicates averaged, as the report's ranking does.

An entry whose cells do not cover every OOD set of its table (a failed cell, a run of fewer sets) is marked with
the sets it has: its averages are over those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from oodbench.report import stats
from oodbench.store import json_field

ScoreLoader = Callable[[str], np.ndarray]

#: (column, metric, the OOD group it averages over: None for all sets)
SUMMARIES = (("near_auroc", "auroc", "near"), ("far_auroc", "auroc", "far"), ("auroc", "auroc", None),
             ("fpr95", "fpr95_ood_pos", None))
LEVEL = 0.95


@dataclass(frozen=True)
class TableKey:
    """What the entries of one table share."""

    benchmark: str
    #: the dataset the benchmark's ID set stands for ('' when it is itself)
    stands_for: str
    protocol: str
    version: str
    backbone: str
    #: 'full-spectrum' when covariate-shifted ID sets counted as ID (other metrics than the plain evaluation's), else ''
    evaluation: str = ""
    #: the adversarial attack the cells were evaluated under ('' for clean inputs)
    attack: str = ""

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{self.benchmark}_{self.protocol}_{self.version}_{self.backbone}_{self.evaluation}_{self.attack}")

    @property
    def title(self) -> str:
        copy = f" (a copy of {self.stands_for})" if self.stands_for else ""
        shifted = " · full-spectrum (covariate-shifted sets count as ID)" if self.evaluation else ""
        attacked = f" · under attack: {self.attack}" if self.attack else ""
        return (f"{self.benchmark}{copy} · protocol {self.protocol} (version {self.version or 'unrecorded'}) · {self.backbone}"
                f"{shifted}{attacked}")


@dataclass
class Entry:
    """One leaderboard row."""

    source: str
    run_id: str
    method: str
    params: dict
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    seeds: list[int]
    ood_sets: list[str]
    date: str
    code: str
    reduced: str = ""
    transductive: bool = False
    #: a submission's bundle (its entry.json), None for a store's own runs
    submission: dict | None = None
    #: (cells re-checked, cells reproduced, the reasons of those that were not)
    verified: tuple[int, int, list[str]] = (0, 0, [])
    links: dict[str, str] = field(default_factory=dict)


def table_key(row: pd.Series) -> TableKey:
    protocol = json_field(row["protocol"])
    stands = row.get("id_stands_for")
    return TableKey(row["id_dataset"], stands if isinstance(stands, str) and stands != row["id_dataset"] else "",
                    protocol.get("name", "clean"), protocol.get("version", ""), row["backbone"],
                    "full-spectrum" if protocol.get("full_spectrum") else "", row["attack"] if isinstance(row.get("attack"), str) else "")


def _summary(rows: pd.DataFrame, load: ScoreLoader, metric: str, group: str | None, replicates: int) -> tuple[float, tuple[float, float]] | None:
    """Mean over seeds of the mean of ``metric`` over the group's OOD sets, and its bootstrap interval."""
    chosen = rows if group is None else rows[rows["ood_group"] == group]
    if chosen.empty:
        return None
    value = float(chosen.groupby("seed")[metric].mean().mean())
    per_seed = [stats.mean_replicates([(load(r.id_scores_path), load(r.ood_scores_path))
                                       for r in cells.sort_values("ood_dataset").itertuples()], replicates, int(seed), metric=metric)
                for seed, cells in chosen.groupby("seed")]
    interval = stats.percentile_interval(np.mean(per_seed, axis=0), LEVEL)
    return value, (interval.low, interval.high)


def entries(results: pd.DataFrame, runs: pd.DataFrame, load: ScoreLoader, source: str, replicates: int,
            submission: dict | None = None) -> dict[TableKey, list[Entry]]:
    """The entries of one store's complete runs, by table: the cells with metrics, clean and under each attack apart."""
    complete = runs[runs["status"] == "complete"].set_index("run_id")
    ok = results[(results["status"] == "ok") & results["run_id"].isin(complete.index)].assign(attack=lambda r: r["attack"].fillna(""))
    tables: dict[TableKey, list[Entry]] = {}
    for (run_id, method, _, _), rows in ok.groupby(["run_id", "method", "params_hash", "attack"], sort=False):
        first, run = rows.iloc[0], complete.loc[run_id]
        versions = json_field(run["versions"])
        values, intervals = {"id_accuracy": float(rows.groupby("seed")["id_accuracy"].first().mean())}, {}
        for column, metric, group in SUMMARIES:
            summary = _summary(rows, load, metric, group, replicates)
            if summary is not None:
                values[column], intervals[column] = summary
        commit = run["git_commit"] if isinstance(run["git_commit"], str) else "unrecorded"
        entry = Entry(source, run_id, method, json_field(first["params"]), values, intervals, sorted(map(int, rows["seed"].unique())),
                      sorted(rows["ood_dataset"].unique()), pd.Timestamp(run["started"], unit="s").strftime("%Y-%m-%d"),
                      f"oodbench {versions.get('oodbench', '?')} @ {commit[:12]}{'+dirty' if commit.endswith('+dirty') else ''}",
                      first["reduced"] if isinstance(first["reduced"], str) else "", bool(first["transductive"]), submission)
        tables.setdefault(table_key(first), []).append(entry)
    return tables


def mark_verified(tables: dict[TableKey, list[Entry]], checks: pd.DataFrame) -> None:
    """Attach the latest verification of each cell (``verifications`` rows of the stores) to its entry."""
    if checks.empty:
        return
    cell = ["run_id", "method", "params_hash", "ood_dataset", "seed", "attack"]
    latest = checks.assign(attack=checks["attack"].fillna("")).sort_values("created").drop_duplicates(cell, keep="last")
    for key, rows in tables.items():
        for entry in rows:
            mine = latest[(latest["run_id"] == entry.run_id) & (latest["method"] == entry.method) & (latest["attack"] == key.attack)]
            if not mine.empty:
                failed = mine[mine["verdict"] != "reproduced"]
                entry.verified = (len(mine), len(mine) - len(failed), [f"{r.ood_dataset}: {r.reason}" for r in failed.itertuples()])


def published_rows(references: pd.DataFrame, key: TableKey) -> pd.DataFrame:
    """Published numbers of the dataset the benchmark stands for that fill the leaderboard's columns (near/far
    averages, ID accuracy): one row per (source, method, backbone); empty when none."""
    dataset = key.stands_for or key.benchmark
    columns = {("auroc", "Near-OOD average"): "near_auroc", ("auroc", "Far-OOD average"): "far_auroc", ("id_accuracy", ""): "id_accuracy"}
    wanted = np.array([(m, o) in columns for m, o in zip(references["metric"], references["ood_dataset"], strict=True)], dtype=bool)
    mine = references[(references["id_dataset"] == dataset).to_numpy() & wanted]
    if mine.empty:
        return pd.DataFrame()
    mine = mine.assign(column=[columns[(m, o)] for m, o in zip(mine["metric"], mine["ood_dataset"], strict=True)])
    table = mine.pivot_table(index=["source", "method", "backbone"], columns="column", values="value", aggfunc="first")
    notes = mine.groupby(["source", "method", "backbone"])["notes"].first()
    table = table.join(notes).reset_index()
    return table[table[["near_auroc", "far_auroc"]].notna().any(axis=1)] if {"near_auroc", "far_auroc"} <= set(table) else pd.DataFrame()

