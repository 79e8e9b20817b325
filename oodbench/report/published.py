"""Published vs reproduced: the reference numbers next to the store's values for the same cells.

A published number is compared only where the ID dataset, the method and the OOD set (or, for a
published average, every OOD set it averages) match the results; the protocol of both sides is
shown, since backbone, fit split and metric convention explain most differences.
"""

from __future__ import annotations

import json

import pandas as pd

from oodbench.report.reference import load_references
from oodbench.report.tables import AVERAGE

COMPARED_METRICS = ("auroc", "aupr_out", "aupr_in", "fpr95_id_pos", "fpr95_ood_pos")
KEYS = ["id_dataset", "method", "ood_dataset", "metric"]


def _our_protocol(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    protocol = json.loads(first["protocol"]) if isinstance(first["protocol"], str) else {}
    fit = protocol.get("fit_split")
    parts = [first["backbone"], first["checkpoint_origin"] or "", f"fit on {fit}" if fit else "no fit",
             f"{int(first['n_id'])} ID test images", f"{rows['seed'].nunique()} seed(s)"]
    return "; ".join(p for p in parts if p)


def published_vs_reproduced(results: pd.DataFrame) -> pd.DataFrame:
    """Columns: source, id_dataset, method, ood_dataset, metric, published, reproduced, difference,
    our_protocol, their_protocol (backbone and notes of the reference)."""
    references = load_references()
    references = references[references["id_dataset"].isin(results["id_dataset"].unique())]
    ok = results[results["status"] == "ok"]
    if references.empty or ok.empty:
        return pd.DataFrame(columns=["source", *KEYS, "published", "reproduced", "difference", "our_protocol", "their_protocol"])
    cells = ok.groupby(["id_dataset", "method", "ood_dataset"])[list(COMPARED_METRICS)].mean()
    ours = cells.stack().rename("reproduced").reset_index().rename(columns={"level_3": "metric"})
    averages = []
    for (source, id_dataset, method), refs in references.groupby(["source", "id_dataset", "method"]):
        sets = set(refs["ood_dataset"]) - {AVERAGE}
        if AVERAGE not in set(refs["ood_dataset"]) or (id_dataset, method) not in cells.droplevel(2).index:
            continue
        have = cells.loc[(id_dataset, method)]
        if sets <= set(have.index):
            for metric, value in have.loc[sorted(sets)].mean().items():
                averages.append({"id_dataset": id_dataset, "method": method, "ood_dataset": AVERAGE, "metric": metric,
                                 "reproduced": value, "source": source})
    ours_all = pd.concat([ours, pd.DataFrame(averages).drop(columns="source", errors="ignore")], ignore_index=True)
    ours_all = ours_all.drop_duplicates(KEYS)
    merged = references.merge(ours_all, on=KEYS, how="inner").rename(columns={"value": "published"})
    merged["difference"] = merged["reproduced"] - merged["published"]
    protocols = {key: _our_protocol(rows) for key, rows in ok.groupby(["id_dataset", "method"])}
    merged["our_protocol"] = [protocols[(i, m)] for i, m in zip(merged["id_dataset"], merged["method"], strict=True)]
    merged["their_protocol"] = merged["backbone"] + "; " + merged["notes"]
    return merged[["source", *KEYS, "published", "reproduced", "difference", "our_protocol", "their_protocol"]]
