"""``oodbench compare RUN_A RUN_B``: per-cell differences between two runs, regressions marked.

Cells are matched on (ID set, backbone, method, OOD set, seed, attack). A regression is a cell of RUN_B whose
AUROC or AUPR-OUT is lower, or whose FPR@95TPR is higher, than RUN_A's by more than the threshold.
"""

from __future__ import annotations

import pandas as pd

from oodbench.errors import ConfigError
from oodbench.report.tables import CELL_KEY as KEY
from oodbench.store import ResultStore

#: metric -> +1 when higher is better, -1 when lower is better
COMPARED = {"auroc": 1, "aupr_out": 1, "fpr95_ood_pos": -1, "fpr95_id_pos": -1}


def compare_runs(store: ResultStore, run_a: str, run_b: str, threshold: float = 0.005) -> tuple[pd.DataFrame, list[str]]:
    """The per-cell differences (B - A) with a ``regression`` flag, and notes on unmatched cells."""
    frames = {}
    for run in (run_a, run_b):
        frames[run] = store.results(run)
        if frames[run].empty:
            known = ", ".join(store.runs()["run_id"].tail(5))
            raise ConfigError(f"run '{run}' has no results in {store.path}", f"recent runs: {known}")
    a, b = (frames[r][frames[r]["status"] == "ok"][KEY + list(COMPARED)] for r in (run_a, run_b))
    merged = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    regression = pd.Series(False, index=merged.index)
    for metric, sign in COMPARED.items():
        merged[f"{metric}_diff"] = merged[f"{metric}_b"] - merged[f"{metric}_a"]
        regression |= sign * merged[f"{metric}_diff"] < -threshold
    merged["regression"] = regression
    notes = []
    for name, left, right in ((run_a, a, b), (run_b, b, a)):
        only = left.merge(right[KEY], on=KEY, how="left", indicator=True).query("_merge == 'left_only'")
        if len(only):
            notes.append(f"{len(only)} cell(s) only in {name}: " + ", ".join(f"{r.method}/{r.ood_dataset}/seed{r.seed}" for r in only.head(8).itertuples()))
    return merged, notes


def format_comparison(merged: pd.DataFrame, notes: list[str], run_a: str, run_b: str, threshold: float) -> str:
    columns = KEY + [c for m in COMPARED for c in (f"{m}_a", f"{m}_b", f"{m}_diff")] + ["regression"]
    table = merged[columns].copy()
    table["regression"] = table["regression"].map({True: "REGRESSION", False: ""})
    text = [f"{run_b} minus {run_a} (regression: worse by more than {threshold})",
            table.to_string(index=False, float_format=lambda v: f"{v:+.4f}" if abs(v) < 1 else f"{v:.4f}"),
            f"{int(merged['regression'].sum())} regression(s) in {len(merged)} matched cells"]
    return "\n".join(text + notes)
