"""Paper-style tables built from store records (never from formatted strings).

The main layout: rows are methods, columns are OOD sets x the metrics of the records' protocol
(the MIM paper's AUROC and AUPR-OUT; OpenOOD v1.5's AUROC and FPR@95 with OOD positive, after a
column of ID accuracy) plus their average over OOD sets. Values are means over seeds; cells whose
method failed or produced non-finite scores are reported as such and left out of the average.

Rows follow paper order (the ``table_order`` each method's plugin declares: the MIM table's
baselines, then other post-hoc methods, then training-time methods). When the ID set groups its
OOD sets, columns come as near-OOD sets and their average, far-OOD sets and theirs, the rest,
then the average over all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from oodbench.store import json_field

MIM_METRICS = (("auroc", "AUROC"), ("aupr_out", "AUPR"))
#: the column of ID accuracy, in the tables of protocols that show it
ACCURACY = ("ID", "Acc.")
AVERAGE = "Average"
GROUP_AVERAGES = {"near": "Near-OOD average", "far": "Far-OOD average"}
#: where methods without a declared ``table_order`` (stores of older versions) go
UNRANKED = 1000


def _ordered(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(values))


def method_order(results: pd.DataFrame) -> list[str]:
    """The methods of ``results`` in paper order: by declared ``table_order``, ties in order of appearance."""
    methods = _ordered(results["method"])
    if "table_order" not in results:
        return methods
    rank = results.groupby("method")["table_order"].min().fillna(UNRANKED)
    return sorted(methods, key=lambda method: rank[method])


def ood_groups(results: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """The OOD sets as the ID set groups them: ('near', sets), ('far', sets), ('', the others); no empty groups."""
    oods = _ordered(results["ood_dataset"])
    group = results.groupby("ood_dataset")["ood_group"].first().fillna("") if "ood_group" in results else {}
    grouped = [(name, [o for o in oods if group.get(o, "") == name]) for name in ("near", "far", "")]
    return [(name, members) for name, members in grouped if members]


REDUCED_MARK = "\u2020"
TRANSDUCTIVE_MARK = "\u00a7"


@dataclass(frozen=True)
class RowMarks:
    """What marks a method's row in every table and export: ``\u2020`` it ran with settings its preset
    reduced against the paper's; ``\u00a7`` it is transductive (its scores use the batch they are
    computed in, so they are not comparable to per-sample scores)."""

    #: method -> the settings its preset reduced, e.g. "epochs 2 (paper 10)"
    reduced: dict[str, str] = field(default_factory=dict)
    transductive: tuple[str, ...] = ()
    #: what the table mixes: several versions of its protocol, or an OOD set's cells from different data
    mixed: tuple[str, ...] = ()

    @classmethod
    def of(cls, results: pd.DataFrame) -> "RowMarks":
        reduced = {} if "reduced" not in results else {
            m: r for m, r in zip(results["method"], results["reduced"].fillna(""), strict=True) if r}
        transductive = () if "transductive" not in results else tuple(dict.fromkeys(
            results.loc[results["transductive"].fillna(0).astype(bool), "method"]))
        return cls(reduced, transductive, version_notes(results))

    def marks(self, method: str) -> str:
        return (REDUCED_MARK if method in self.reduced else "") + (TRANSDUCTIVE_MARK if method in self.transductive else "")

    def label(self, method: str) -> str:
        """``method``, with its marks."""
        marks = self.marks(method)
        return f"{method} {marks}" if marks else method

    def apply(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` with its method rows labelled (for text and exports)."""
        return table.rename(index=self.label, level="method")

    def footnotes(self) -> list[str]:
        notes = []
        if self.reduced:
            alike: dict[str, list[str]] = {}  # a run-wide reduction (a time budget's epochs) is said once
            for method, reduced in self.reduced.items():
                alike.setdefault(reduced, []).append(method)
            notes.append(f"{REDUCED_MARK} reduced settings: " + "; ".join(f"{', '.join(ms)}: {r}" for r, ms in alike.items()))
        if self.transductive:
            notes.append(f"{TRANSDUCTIVE_MARK} transductive (scores use their batch, not comparable to per-sample ones): "
                         + ", ".join(self.transductive))
        return notes + list(self.mixed)


def version_notes(results: pd.DataFrame) -> tuple[str, ...]:
    """Warnings for a table whose rows come from several versions of their protocol (a method's settings, the
    metrics or the benchmark's lists changed between runs), or whose OOD set's cells come from different data."""
    if "protocol" not in results or results.empty:
        return ()
    records = [json_field(text) for text in results["protocol"]]
    versions: dict[tuple[str, str], list[str]] = {}
    data: dict[str, set[str]] = {}
    for method, ood, record in zip(results["method"], results["ood_dataset"], records, strict=True):
        if record.get("version"):
            versions.setdefault((record.get("name", "clean"), record["version"]), []).append(method)
        if record.get("data"):
            data.setdefault(ood, set()).add(record["data"])
    notes = []
    if len(versions) > 1:
        listed = "; ".join(f"{name} {version}: {', '.join(dict.fromkeys(methods))}" for (name, version), methods in versions.items())
        notes.append(f"warning: the rows come from {len(versions)} protocol versions ({listed}): settings, metrics or "
                     "benchmark lists differ between them, so their numbers are not comparable as they stand")
    changed = sorted(ood for ood, digests in data.items() if len(digests) > 1)
    if changed:
        notes.append(f"warning: the cells of {', '.join(changed)} come from different data (the splits' contents differ "
                     "between runs)")
    return tuple(notes)


HYGIENE_MARK = "\u2021"


def hygiene_notes(results: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(method, OOD set) -> what the data-hygiene checks found that concerns the cell (flagged cells only)."""
    if "hygiene" not in results:
        return {}
    return {(r.method, r.ood_dataset): r.hygiene for r in results.itertuples() if isinstance(r.hygiene, str) and r.hygiene}


def hygiene_footnote(notes: dict[tuple[str, str], str]) -> str:
    """The footnote of :data:`HYGIENE_MARK` ('' when no cell is flagged): each distinct finding once."""
    findings = dict.fromkeys(finding for text in notes.values() for finding in text.split("; "))
    return "" if not findings else f"{HYGIENE_MARK} data hygiene (averages include these cells): " + "; ".join(findings)


def protocol_record(results: pd.DataFrame) -> dict:
    """The protocol record of the rows (the first row's; one table holds one run's protocol); {} for stores
    of older versions."""
    record = results["protocol"].iloc[0] if "protocol" in results and len(results) else None
    return json_field(record)


def table_metrics(results: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """The (metric, label) pairs of the main table: those the rows' protocol declares, else the MIM paper's."""
    return tuple(tuple(pair) for pair in protocol_record(results).get("metrics", MIM_METRICS))


def shifted_accuracy(results: pd.DataFrame) -> pd.DataFrame:
    """Full-spectrum rows' accuracy on each covariate-shifted ID set: index methods, a column per set (mean
    over seeds); empty without full-spectrum rows."""
    if "csid_accuracy" not in results:
        return pd.DataFrame()
    rows = [{"method": method, **(json.loads(value) if isinstance(value, str) else value)}
            for method, value in zip(results["method"], results["csid_accuracy"], strict=True) if isinstance(value, (str, dict))]
    return pd.DataFrame(rows).groupby("method", sort=False).mean() if rows else pd.DataFrame()


def main_layout(results: pd.DataFrame) -> pd.DataFrame:
    """Numeric main table: index methods, columns (OOD set, group average or 'Average', metric label) for the
    metrics of :func:`table_metrics`, after :data:`ACCURACY` (the scoring network's mean ID accuracy) and,
    under full-spectrum evaluation, the accuracy on each covariate-shifted ID set, when the protocol shows
    accuracy.

    NaN marks a cell without a valid value (failed or non-finite); :func:`cell_status` says why.
    """
    metrics = table_metrics(results)
    groups = ood_groups(results)
    oods = [o for _, members in groups for o in members]
    headers = [h for name, members in groups for h in [*members, *([GROUP_AVERAGES[name]] if name else [])]]
    ok = results[results["status"] == "ok"]
    shows_accuracy = bool(protocol_record(results).get("accuracy_column"))
    shifted = shifted_accuracy(ok) if shows_accuracy else pd.DataFrame()
    accuracy = [ACCURACY, *((name, ACCURACY[1]) for name in shifted.columns)] if shows_accuracy else []
    columns = pd.MultiIndex.from_tuples([*accuracy, *((h, label) for h in [*headers, AVERAGE] for _, label in metrics)])
    table = pd.DataFrame(np.nan, index=pd.Index(method_order(results), name="method"), columns=columns)
    if accuracy:
        table[ACCURACY] = ok.groupby("method")["id_accuracy"].mean().reindex(table.index)
        for name in shifted.columns:
            table[(name, ACCURACY[1])] = shifted[name].reindex(table.index)
    means = ok.groupby(["method", "ood_dataset"])[[m for m, _ in metrics]].mean()
    for (method, ood), row in means.iterrows():
        for metric, label in metrics:
            table.loc[method, (ood, label)] = row[metric]
    for _, label in metrics:
        for name, members in groups:
            if name:
                table[(GROUP_AVERAGES[name], label)] = table[[(o, label) for o in members]].mean(axis=1, skipna=False)
        table[(AVERAGE, label)] = table[[(o, label) for o in oods]].mean(axis=1, skipna=False)
    return table


def cell_status(results: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(method, OOD set) -> 'failed' / 'nonfinite' for cells without a valid value in any seed."""
    bad = results[results["status"] != "ok"]
    return {(r.method, r.ood_dataset): r.status for r in bad.itertuples()}


def clean_and_attacked(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of clean inputs and those of attacked inputs (stores of older versions: all clean)."""
    attacked = results["attack"].fillna("").astype(bool) if "attack" in results else pd.Series(False, index=results.index)
    return results[~attacked], results[attacked]


ROBUST_METRICS = (("fpr95_id_pos", "FPR@95TPR(ID+)"), ("auroc", "AUROC"))
NATURAL = "natural"


def robustness_layout(results: pd.DataFrame) -> pd.DataFrame:
    """The ATOM paper's Table 2 layout: rows methods, columns (condition, metric), each the mean over
    OOD sets (and seeds) of valid cells; conditions 'natural' (clean inputs) and each attack's name.
    A method that could not be attacked shows no values under that attack."""
    frame = results.assign(condition=results["attack"].fillna("").map(lambda a: a.split(":")[0] if a else NATURAL))
    conditions = _ordered(frame["condition"])
    ok = frame[frame["status"] == "ok"]
    means = ok.groupby(["method", "condition"])[[m for m, _ in ROBUST_METRICS]].mean()
    columns = pd.MultiIndex.from_tuples([(c, label) for c in conditions for _, label in ROBUST_METRICS])
    table = pd.DataFrame(np.nan, index=pd.Index(method_order(frame), name="method"), columns=columns)
    for (method, condition), row in means.iterrows():
        for metric, label in ROBUST_METRICS:
            table.loc[method, (condition, label)] = row[metric]
    return table


def format_terminal(results: pd.DataFrame, digits: int = 4) -> str:
    """The main layout of the clean cells as aligned text for the terminal, with a caption naming the
    protocol's metric conventions, and the robustness layout when the run attacked the methods."""
    results, attacked = clean_and_attacked(results)
    table = main_layout(results)
    metrics = table_metrics(results)
    status = cell_status(results)
    text = table.map(lambda v: f"{v:.{digits}f}" if pd.notna(v) else "")
    for (method, ood), why in status.items():
        for _, label in metrics:
            text.loc[method, (ood, label)] = why
    averages = [c for c in text.columns if c[0] in {AVERAGE, *GROUP_AVERAGES.values()}]
    for method in text.index:
        if any(m == method for m, _ in status):
            for column in averages:
                if not text.loc[method, column]:
                    text.loc[method, column] = "-"
    flagged = hygiene_notes(results)
    for method, ood in flagged:
        for _, label in metrics:
            if text.loc[method, (ood, label)]:
                text.loc[method, (ood, label)] += HYGIENE_MARK
    marks = RowMarks.of(results)
    text = marks.apply(text)
    seeds = results["seed"].nunique()
    ids = ", ".join(_ordered(results["id_dataset"]))
    record = protocol_record(results)
    version = f" (version {record['version']})" if record.get("version") and not marks.mixed else ""
    caption = (
        f"ID {ids}, backbone {', '.join(_ordered(results['backbone']))}; protocol {record.get('name', 'clean')}{version}; "
        f"{', '.join(label for _, label in metrics)}, {'mean over ' + str(seeds) + ' seeds' if seeds > 1 else 'one seed'}"
    )
    conventions = [f"metrics: {record['conventions']}"] if record.get("conventions") else []
    footnotes = [*marks.footnotes(), *([hygiene_footnote(flagged)] if flagged else []), *conventions]
    out = "\n".join([caption, text.to_string(), *footnotes])
    if not attacked.empty:
        robust = robustness_layout(pd.concat([results, attacked])).map(lambda v: f"{v:.{digits}f}" if pd.notna(v) else "not attacked")
        robust = marks.apply(robust)
        attacks = "; ".join(_ordered(attacked["attack"]))
        out += (f"\n\nunder attack ({attacks}); FPR@95TPR with ID positive and AUROC, mean over OOD sets\n"
                + robust.to_string())
    return out


BAL_METRICS = ("fpr95_id_pos", "aupr_in", "aupr_out", "auroc", "detection_error", "id_accuracy")
#: Metrics where lower is better (the best value of a column is its minimum).
LOWER_IS_BETTER = {"fpr95_id_pos", "fpr95_ood_pos", "detection_error"}


def bal_layout(results: pd.DataFrame) -> pd.DataFrame:
    """BAL-paper table: rows (OOD set, method), columns FPR@95TPR(ID+), AUPR-IN, AUPR-OUT, AUROC,
    detection error and the ID accuracy of the scoring network; means over seeds of valid cells."""
    ok = results[results["status"] == "ok"]
    table = ok.groupby(["ood_dataset", "method"], sort=False)[list(BAL_METRICS)].mean()
    oods = [o for _, members in ood_groups(results) for o in members]
    order = pd.MultiIndex.from_product([oods, method_order(results)])
    return table.reindex([i for i in order if i in table.index])


#: what names one result cell across runs
CELL_KEY = ["id_dataset", "backbone", "method", "ood_dataset", "seed", "attack"]


def latest_cells(results: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (:data:`CELL_KEY`): the most recent, when several runs are selected."""
    ordered = results.assign(attack=results["attack"].fillna("") if "attack" in results else "").sort_values("created", kind="stable")
    return ordered.drop_duplicates(CELL_KEY, keep="last").sort_index()
