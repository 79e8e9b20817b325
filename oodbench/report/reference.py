"""Published numbers in one long table, on the 0-1 scale, with the protocol notes that explain why
a reproduction may differ.

The numbers live in the CSV files of :mod:`oodbench.references`; its ``manifest.toml`` says how
each file's columns map onto the table. Corrections of misprinted values are made in the CSVs,
each with a ``correction`` column saying what was changed, why and where from; nothing here knows
a method or a dataset. References given per OOD set can be matched to results; the others (means
over OOD sets a run may not have) keep in ``ood_dataset`` what they average.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources

import pandas as pd

from oodbench.report.tables import GROUP_AVERAGES

COLUMNS = ["source", "protocol", "id_dataset", "method", "ood_dataset", "metric", "value", "backbone", "notes", "correction"]
#: the ``ood_dataset`` of a published value that no OOD set qualifies (the ID accuracy)
NO_OOD = ""


def _table(directory, entry: dict) -> pd.DataFrame:
    table = pd.read_csv(directory.joinpath(entry["file"]), keep_default_na=False, na_values={"value": [""]})
    for column, value in entry.get("where", {}).items():
        table = table[table[column] == value]
    table = table.rename(columns={entry.get("method_column", "method"): "method", entry.get("id_column", "id"): "id_dataset"})
    table["id_dataset"] = table["id_dataset"].replace(entry.get("ids", {}))
    table["method"] = table["method"].replace(entry.get("methods", {}))
    table["ood_dataset"] = table["ood"] if "ood" in table else entry["ood_text"]
    if "backbone_column" in entry:  # renamed by "ID/ARCH" (one architecture name for two networks) or by "ARCH"
        names = entry.get("backbones", {})
        table["backbone"] = [names.get(f"{i}/{arch}", names.get(arch, arch)) for i, arch in zip(table["id_dataset"], table[entry["backbone_column"]], strict=True)]
    else:
        table["backbone"] = entry["backbone"]
    if "notes_columns" in entry:  # per-row notes spread over several columns (a row's own source, say)
        table["notes"] = table[entry["notes_columns"]].astype(str).agg("; ".join, axis=1)
    for column in ("notes", "correction"):
        table[column] = table[column] if column in table else ""
    table["notes"] = [entry["notes"] + (f"; {note}" if note else "") for note in table["notes"]]
    long = table.melt(id_vars=["id_dataset", "method", "ood_dataset", "backbone", "notes", "correction"],
                      value_vars=list(entry["metrics"]), var_name="metric")
    long["metric"] = long["metric"].replace(entry["metrics"])
    grouped = long["metric"].str.partition("@")  # "auroc@near": the mean over the ID set's near-OOD group
    long["metric"] = grouped[0]
    long.loc[grouped[2] != "", "ood_dataset"] = grouped[2][grouped[2] != ""].map(GROUP_AVERAGES)
    long.loc[long["metric"] == "id_accuracy", "ood_dataset"] = NO_OOD
    long["value"] = pd.to_numeric(long["value"]) / entry["scale"]
    return long.assign(source=entry["source"], protocol=entry.get("protocol", "clean"))


@lru_cache(maxsize=1)
def load_references() -> pd.DataFrame:
    """Every published number: source, the oodbench protocol that reproduces it, id_dataset, method,
    ood_dataset, metric, value (0-1), backbone, notes, correction. Averages over the sets of a table are named ``Average``,
    over an ID set's near- or far-OOD group ``Near-OOD average`` / ``Far-OOD average``; the ID accuracy has no OOD set."""
    directory = resources.files("oodbench.references")
    manifest = tomllib.loads(directory.joinpath("manifest.toml").read_text())
    table = pd.concat([_table(directory, entry) for entry in manifest["tables"].values()], ignore_index=True)
    table["ood_dataset"] = table["ood_dataset"].replace({"average": "Average"})
    return table[COLUMNS]
