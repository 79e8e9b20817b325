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

COLUMNS = ["source", "protocol", "id_dataset", "method", "ood_dataset", "metric", "value", "backbone", "notes", "correction"]


def _table(directory, entry: dict) -> pd.DataFrame:
    table = pd.read_csv(directory.joinpath(entry["file"]), keep_default_na=False, na_values={"value": [""]})
    table = table.rename(columns={entry.get("method_column", "method"): "method", "id": "id_dataset"})
    table["method"] = table["method"].replace(entry.get("methods", {}))
    table["ood_dataset"] = table["ood"] if "ood" in table else entry["ood_text"]
    table["backbone"] = table[entry["backbone_column"]] if "backbone_column" in entry else entry["backbone"]
    for column in ("notes", "correction"):
        table[column] = table[column] if column in table else ""
    table["notes"] = [entry["notes"] + (f"; {note}" if note else "") for note in table["notes"]]
    long = table.melt(id_vars=["id_dataset", "method", "ood_dataset", "backbone", "notes", "correction"],
                      value_vars=list(entry["metrics"]), var_name="metric")
    long["metric"] = long["metric"].replace(entry["metrics"])
    long["value"] = pd.to_numeric(long["value"]) / entry["scale"]
    return long.assign(source=entry["source"], protocol=entry.get("protocol", "clean"))


@lru_cache(maxsize=1)
def load_references() -> pd.DataFrame:
    """Every published number: source, the oodbench protocol that reproduces it, id_dataset, method,
    ood_dataset, metric, value (0-1), backbone, notes, correction. Averages over the sets of a table are named ``Average``."""
    directory = resources.files("oodbench.references")
    manifest = tomllib.loads(directory.joinpath("manifest.toml").read_text())
    table = pd.concat([_table(directory, entry) for entry in manifest["tables"].values()], ignore_index=True)
    table["ood_dataset"] = table["ood_dataset"].replace({"average": "Average"})
    return table[COLUMNS]
