"""``oodbench leaderboard``: a static site (HTML, inline CSS and script, no server, nothing fetched) from stores.

``index.html`` has one sortable table per (benchmark, protocol version, backbone), and ``leaderboard.csv`` the same
entries as data (:mod:`oodbench.board.entries`);
every row links to its run's report (``runs/<run id>/report.html``, rendered here from the store) and to its
provenance (``runs/<run id>/provenance.json``: command, configuration, versions, hardware, data checksums,
checkpoints, the protocol records of its cells, what ``oodbench verify`` found, and a submission's ``entry.json``). Published numbers of the
dataset a benchmark stands for (OpenOOD v1.5's leaderboard, ...) are shown in a table of their own, labelled as
published and not re-run. Rows ``oodbench verify`` re-checked are marked with what it found.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import jinja2
import pandas as pd

from oodbench import __version__
from oodbench.board.entries import Entry, TableKey, entries, mark_verified, published_rows
from oodbench.board.sources import ENTRY, Source, open_source
from oodbench.errors import ConfigError
from oodbench.progress import progress
from oodbench.report.html import Selection, build_report, load_scores, run_provenance, write_atomically
from oodbench.report.reference import load_references

TEMPLATE = Path(__file__).parent / "templates" / "leaderboard.html.j2"


def _link(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _run_pages(source: Source, run_id: str, out: Path, replicates: int) -> dict[str, str]:
    """Render the run's report and write its provenance under ``out/runs/<run id>/``; the links from ``out``."""
    folder = out / "runs" / run_id
    report = build_report(source.store, Selection(run=run_id), folder, replicates)
    results = source.store.results(run_id)
    checks = source.store.verifications()
    provenance = {"store": source.label, "run": run_provenance(source.store, [run_id])[0],
                  "protocols": [json.loads(p) for p in dict.fromkeys(p for p in results["protocol"] if isinstance(p, str))],
                  "checkpoints": sorted(set(results["checkpoint"].dropna())), "submission": source.entry,
                  "verifications": checks[checks["run_id"] == run_id].drop(columns=["id"]).to_dict("records")}
    write_atomically(folder / "provenance.json", json.dumps(provenance, indent=1, sort_keys=True, default=str))
    links = {"report": _link(report, out), "provenance": _link(folder / "provenance.json", out)}
    if source.bundle is not None:
        shutil.copy2(source.bundle / "method" / source.entry["method_file"], folder / source.entry["method_file"])
        shutil.copy2(source.bundle / ENTRY, folder / ENTRY)
        links["method file"] = _link(folder / source.entry["method_file"], out)
    return links


def _ordered(rows: list[Entry]) -> list[Entry]:
    """Per-sample methods by average AUROC (best first), then the transductive ones."""
    return sorted(rows, key=lambda e: (e.transductive, -e.values.get("auroc", float("-inf"))))


def build_site(stores: Sequence[str | Path], out: Path, replicates: int = 1000) -> Path:
    """Write the leaderboard of ``stores`` (results directories, databases or submission bundles) into ``out``;
    returns ``out/index.html``."""
    sources = [open_source(path) for path in stores]
    out.mkdir(parents=True, exist_ok=True)
    tables: dict[TableKey, list[Entry]] = {}
    run_links: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for source in sources:
        runs, results = source.store.runs(), source.store.results()
        complete = [r for r in runs.loc[runs["status"] == "complete", "run_id"] if r not in seen and (results["run_id"] == r).any()]
        seen.update(complete)
        found = entries(results[results["run_id"].isin(complete)], runs, load_scores, source.label, replicates, source.entry)
        mark_verified(found, source.store.verifications())
        for key, rows in found.items():
            tables.setdefault(key, []).extend(rows)
        for run_id in progress(complete, desc=f"reports of {source.label}", unit="run"):
            run_links[run_id] = _run_pages(source, run_id, out, replicates)
    if not tables:
        raise ConfigError(f"no complete run with results in {', '.join(map(str, stores))}",
                          "run `oodbench run ...` into these stores first (interrupted and failed runs are not listed)")
    for rows in tables.values():
        for entry in rows:
            entry.links = run_links[entry.run_id]
    ordered = sorted(tables, key=lambda k: (k.benchmark, k.protocol, k.version, k.backbone, k.evaluation, k.attack))
    page = _environment().get_template(TEMPLATE.name).render(
        tables=[(key, _ordered(tables[key]), sorted({o for e in tables[key] for o in e.ood_sets})) for key in ordered],
        published=_published_once(ordered, load_references()),
        stores=[s.label for s in sources], version=__version__,
        generated=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC"))
    write_atomically(out / "index.html", page)
    write_atomically(out / "leaderboard.csv", entries_table(ordered, tables).to_csv(index=False))
    return out / "index.html"


def entries_table(keys: list[TableKey], tables: dict[TableKey, list[Entry]]) -> pd.DataFrame:
    """Every entry as one row of a machine-readable table (``leaderboard.csv``): its table, values, intervals,
    verification and links."""
    rows = []
    for key in keys:
        for entry in _ordered(tables[key]):
            checked, same, why = entry.verified
            rows.append({**dataclasses.asdict(key), "method": entry.method, "params": json.dumps(entry.params, sort_keys=True),
                         **entry.values, **{f"{column}_ci_low": low for column, (low, _) in entry.intervals.items()},
                         **{f"{column}_ci_high": high for column, (_, high) in entry.intervals.items()},
                         "seeds": " ".join(map(str, entry.seeds)), "ood_sets": " ".join(entry.ood_sets), "date": entry.date,
                         "code": entry.code, "reduced": entry.reduced, "transductive": entry.transductive,
                         "submitted": entry.submission is not None, "cells_checked": checked, "cells_reproduced": same,
                         "not_reproduced": "; ".join(why), "run_id": entry.run_id, "store": entry.source,
                         **{f"link_{name.replace(' ', '_')}": href for name, href in entry.links.items()}})
    return pd.DataFrame(rows)


def _published_once(keys: list[TableKey], references: pd.DataFrame) -> dict[TableKey, pd.DataFrame]:
    """The published rows of each dataset, shown once: after the last table of the benchmarks that stand for it."""
    last = {key.stands_for or key.benchmark: key for key in keys}
    return {key: published_rows(references, key) if last[key.stands_for or key.benchmark] == key else pd.DataFrame() for key in keys}


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), undefined=jinja2.StrictUndefined,
                                     autoescape=jinja2.select_autoescape(["html", "j2"]))
    environment.filters["num"] = lambda v, d=4: "" if v is None or pd.isna(v) else f"{v:.{d}f}"
    return environment
