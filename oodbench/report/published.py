"""Published vs reproduced: the reference numbers next to the store's values for the same cells.

A published number is compared where the ID dataset, the method and the OOD set (or, for a
published average, every OOD set it averages) match the results. A re-encoded copy is matched
through the dataset it stands for (``same_as``, recorded with every row) and named in the
comparison, so a cifar10-jpeg run is compared with CIFAR-10 numbers and says so. The protocol of
both sides is shown, since backbone, fit split, data copy and metric convention explain most
differences; a corrected published value carries its correction. Only like is compared with like:
each published table declares the oodbench protocol that reproduces it (the MIM paper's tables:
``mim-notebook``), a result is compared only with tables of its own run's protocol, and every row
names it.

Published means over an ID set's near- or far-OOD group (OpenOOD v1.5's leaderboard) are compared with
our mean over the run's sets of that group, and ``reproduced_on`` names them (a run may have fewer
sets than the benchmark); a published ID accuracy with the mean accuracy of the scoring networks.
Where a published table gives one key for several backbones (OpenOOD's ImageNet-1K networks), only
the row of our backbone is kept when there is one.
"""

from __future__ import annotations

import pandas as pd

from oodbench.report.reference import NO_OOD, load_references
from oodbench.report.tables import AVERAGE, GROUP_AVERAGES
from oodbench.store import json_field

COMPARED_METRICS = ("auroc", "aupr_out", "aupr_in", "fpr95_id_pos", "fpr95_ood_pos")
KEYS = ["protocol", "id_dataset", "method", "ood_dataset", "metric"]
OUTPUT = ["source", *KEYS, "published", "reproduced", "difference", "reproduced_on", "our_protocol", "their_protocol",
          "correction"]


def _stands_for(results: pd.DataFrame, column: str) -> pd.Series:
    """The dataset each row's ``id_dataset`` / ``ood_dataset`` stands for (stores of older versions: itself)."""
    stands = results.get(column.replace("_dataset", "_stands_for"))
    return results[column] if stands is None else stands.fillna(results[column])


def protocol_name(record: object) -> str:
    """The protocol a store row was made under (rows of older versions: clean)."""
    protocol = json_field(record)
    return protocol.get("name", "clean")


def _our_protocol(rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    protocol = json_field(first["protocol"])
    fit = protocol.get("fit_split")
    parts = [f"protocol {protocol.get('name', 'clean')}", first["backbone"], first["checkpoint_origin"] or "",
             f"fit on {fit}" if fit else "no fit",
             f"{int(first['n_id'])} ID test images", f"{rows['seed'].nunique()} seed(s)"]
    return "; ".join(p for p in parts if p)


def _averages(references: pd.DataFrame, cells: pd.DataFrame) -> list[dict]:
    """Our mean over exactly the OOD sets a published average covers, where we have all of them."""
    rows = []
    for (protocol, id_dataset, method), refs in references.groupby(["protocol", "id_dataset", "method"]):
        sets = set(refs["ood_dataset"]) - {AVERAGE}
        if AVERAGE not in set(refs["ood_dataset"]) or (protocol, id_dataset, method) not in cells.droplevel(3).index:
            continue
        have = cells.loc[(protocol, id_dataset, method)]
        if sets <= set(have.index):
            for metric, value in have.loc[sorted(sets)].mean().items():
                rows.append({"protocol": protocol, "id_dataset": id_dataset, "method": method, "ood_dataset": AVERAGE,
                             "metric": metric, "reproduced": value})
    return rows


def _group_means(ok: pd.DataFrame) -> list[dict]:
    """Our mean over the sets of each near/far group, and the ID accuracy, per (protocol, ID set, method)."""
    rows = []
    for (protocol, id_dataset, method), cells in ok.groupby(["protocol_name", "id_dataset", "method"]):
        key = {"protocol": protocol, "id_dataset": id_dataset, "method": method}
        if "id_accuracy" in cells:
            rows.append({**key, "ood_dataset": NO_OOD, "metric": "id_accuracy", "reproduced": cells["id_accuracy"].mean(), "sets": ""})
        grouped = cells[cells["ood_group"].isin(list(GROUP_AVERAGES))] if "ood_group" in cells else cells.assign(ood_group="").iloc[:0]
        for group, members in grouped.groupby("ood_group"):
            per_set = members.groupby("ood_dataset")[list(COMPARED_METRICS)].mean()
            sets = f"mean over {', '.join(per_set.index)}"
            rows += [{**key, "ood_dataset": GROUP_AVERAGES[group], "metric": metric, "reproduced": value, "sets": sets}
                     for metric, value in per_set.mean().items()]
    return rows


def _own_backbone_only(merged: pd.DataFrame, ours: dict) -> pd.DataFrame:
    """Where a published key has rows of several backbones and one is ours, that row alone."""
    mine = pd.Series([ours[key] for key in zip(merged["protocol"], merged["id_dataset"], merged["method"], strict=True)],
                     index=merged.index)
    same = merged["backbone"] == mine
    has_same = same.groupby([merged[k] for k in ["source", *KEYS]]).transform("any")
    return merged[same | ~has_same]


def published_vs_reproduced(results: pd.DataFrame) -> pd.DataFrame:
    """Columns of :data:`OUTPUT`; ``id_dataset`` / ``ood_dataset`` are the published sets and
    ``reproduced_on`` names the data the reproduction used when it is a copy of them."""
    ok = results[results["status"] == "ok"].copy()
    if ok.empty:
        return pd.DataFrame(columns=OUTPUT)
    ok["own_id"], ok["own_ood"] = ok["id_dataset"], ok["ood_dataset"]
    ok["protocol_name"] = ok["protocol"].map(protocol_name)
    ok["id_dataset"], ok["ood_dataset"] = _stands_for(ok, "id_dataset"), _stands_for(ok, "ood_dataset")
    references = load_references()
    references = references[references["id_dataset"].isin(ok["id_dataset"].unique())]
    if references.empty:
        return pd.DataFrame(columns=OUTPUT)
    cells = ok.groupby(["protocol_name", "id_dataset", "method", "ood_dataset"])[list(COMPARED_METRICS)].mean()
    cells.index = cells.index.rename("protocol", level=0)
    ours = cells.stack().rename("reproduced").reset_index().rename(columns={"level_4": "metric"})
    ours_all = pd.concat([ours, pd.DataFrame(_averages(references, cells)), pd.DataFrame(_group_means(ok))],
                         ignore_index=True).drop_duplicates(KEYS).reindex(columns=[*KEYS, "reproduced", "sets"])
    merged = references.merge(ours_all, on=KEYS, how="inner").rename(columns={"value": "published"})
    backbones = ok.groupby(["protocol_name", "id_dataset", "method"])["backbone"].first().to_dict()
    merged = _own_backbone_only(merged, backbones).reset_index(drop=True)
    merged["difference"] = merged["reproduced"] - merged["published"]
    copies = ok.groupby(["id_dataset", "ood_dataset"])[["own_id", "own_ood"]].first()
    merged["reproduced_on"] = ["; ".join(part for part in (_copy_label(copies, i, o), sets if isinstance(sets, str) else "") if part)
                               for i, o, sets in zip(merged["id_dataset"], merged["ood_dataset"], merged["sets"], strict=True)]
    protocols = {key: _our_protocol(rows) for key, rows in ok.groupby(["protocol_name", "id_dataset", "method"])}
    merged["our_protocol"] = [protocols[key] for key in zip(merged["protocol"], merged["id_dataset"], merged["method"], strict=True)]
    merged["their_protocol"] = merged["backbone"] + "; " + merged["notes"]
    return merged[OUTPUT]


def _copy_label(copies: pd.DataFrame, id_dataset: str, ood_dataset: str) -> str:
    """'' when the run used the published sets themselves, else the copies it used ('cifar10-jpeg')."""
    own_id = copies.xs(id_dataset, level=0)["own_id"].iloc[0]
    own_ood = copies.loc[(id_dataset, ood_dataset), "own_ood"] if (id_dataset, ood_dataset) in copies.index else ood_dataset
    parts = [f"{own} for {published}" for own, published in ((own_id, id_dataset), (own_ood, ood_dataset)) if own != published]
    return ", ".join(parts)
