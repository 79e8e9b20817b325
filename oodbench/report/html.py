"""``oodbench report``: one self-contained HTML file (CSS inline, figures as inline SVG) plus
LaTeX, Markdown and CSV exports next to it, all built from store records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from oodbench import __version__
from oodbench.errors import ConfigError
from oodbench.metrics import METRIC_LABELS
from oodbench.report import plots
from oodbench.report.export import best_mask, to_latex, to_markdown
from oodbench.report.leaderboard import leaderboard
from oodbench.report.published import published_vs_reproduced
from oodbench.report.tables import (
    BAL_METRICS,
    RowMarks,
    bal_layout,
    cell_status,
    clean_and_attacked,
    hygiene_footnote,
    hygiene_notes,
    latest_cells,
    main_layout,
    ood_groups,
    protocol_record,
    robustness_layout,
    table_metrics,
)
from oodbench.store import ResultStore, json_field

TEMPLATES = Path(__file__).parent / "templates"

METRIC_CARD = [
    ("Outlier score", "every method outputs a score where higher means more likely OOD (the negative of a paper's confidence)"),
    ("AUROC", "area under the ROC curve; the probability that a random OOD sample scores above a random ID sample (ties count half); symmetric"),
    ("AUPR-IN", "average precision with ID as the positive class (ranked by the negated score)"),
    ("AUPR-OUT", "average precision with OOD as the positive class; the MIM paper's \u201cAUPR\u201d column"),
    ("FPR@95TPR(OOD+)", "share of ID samples flagged as OOD at the first threshold that catches 95% of the OOD samples (pytorch-ood, OpenOOD)"),
    ("FPR@95TPR(ID+)", "share of OOD samples accepted as ID at the first threshold that accepts 95% of the ID samples (ODIN, Energy, BAL, ATOM papers)"),
    ("Detection error", "min over thresholds of 0.5 (1 - TPR) + 0.5 FPR (BAL's \u201cDet Err\u201d)"),
    ("ID accuracy", "top-1 accuracy on the ID test split of the network that produced the scores (fine-tuned networks for training-time methods)"),
    ("Intervals", "95% percentile bootstrap over test samples (ID and OOD resampled, 1,000 replicates); ties: paired bootstrap on the same samples"),
]


@dataclass
class Selection:
    """Which results a report covers."""

    run: str | None = None
    all: bool = False
    id_dataset: str | None = None


@dataclass
class Section:
    """Everything the template shows for one ID dataset and backbone."""

    id_dataset: str
    #: the backbone, when the report has several (a grid), else ''
    backbone: str
    #: the section's anchor and the stem of its export files
    slug: str
    caption: str
    mim: pd.DataFrame
    mim_best: pd.DataFrame
    status: dict
    bal: pd.DataFrame
    bal_best: pd.DataFrame
    board: pd.DataFrame
    published: pd.DataFrame
    #: the ATOM Table 2 layout (natural and attacked inputs) and the attacks' descriptions; empty without attacks
    robust: pd.DataFrame = field(default_factory=pd.DataFrame)
    attacks: list[str] = field(default_factory=list)
    #: whether the ID set groups its OOD sets as near- and far-OOD (the tables then have group averages)
    grouped: bool = False
    #: the marks of method rows (reduced settings, transductive) in every table and export
    marks: RowMarks = field(default_factory=RowMarks)
    #: (method, OOD set) -> what the data-hygiene checks found that concerns the cell (cells marked)
    hygiene: dict = field(default_factory=dict)
    #: the main table's metric labels -> metric names (the protocol's metrics)
    metrics: dict = field(default_factory=dict)
    #: the protocol record of the section's rows (name, conventions, ...)
    protocol: dict = field(default_factory=dict)

    @property
    def main_title(self) -> str:
        """The main table's heading: its metrics and the protocol whose layout it follows."""
        return f"{' / '.join(self.metrics)} per OOD set ({self.protocol.get('layout', 'MIM-paper layout')})"

    @property
    def title(self) -> str:
        return f"ID {self.id_dataset}" + (f", backbone {self.backbone}" if self.backbone else "")

    @property
    def hygiene_note(self) -> str:
        return hygiene_footnote(self.hygiene)
    figures: dict = field(default_factory=dict)
    exports: dict = field(default_factory=dict)


def select_results(store: ResultStore, selection: Selection) -> tuple[pd.DataFrame, list[str]]:
    """Result rows of the selection (one row per cell, the latest when runs repeat a cell) and the run ids."""
    store.require()
    if selection.all:
        results = store.results()
    else:
        run = selection.run or store.latest_run_id()
        if run is None:
            raise ConfigError(f"the store {store.path} holds no complete run",
                              "run `oodbench run ...` (a rerun of an interrupted run reuses its finished stages), "
                              "or name a run with --run ID")
        results = store.results(run)
        if results.empty:
            known = ", ".join(store.runs()["run_id"].tail(5))
            raise ConfigError(f"run '{run}' has no results in {store.path}", f"recent runs: {known}")
    if selection.id_dataset:
        results = results[results["id_dataset"] == selection.id_dataset]
        if results.empty:
            raise ConfigError(f"no results for ID dataset '{selection.id_dataset}' in the selection")
    return latest_cells(results), sorted(results["run_id"].unique())


@lru_cache(maxsize=4096)
def load_scores(path: str) -> np.ndarray:
    return np.load(path)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def _section(results: pd.DataFrame, id_dataset: str, backbone: str, out: Path, replicates: int) -> Section:
    """The section of ``id_dataset`` and ``backbone`` ('': the report's only backbone)."""
    chosen = results[(results["id_dataset"] == id_dataset) & ((results["backbone"] == backbone) if backbone else True)]
    cells, attacked = clean_and_attacked(chosen)
    slug = _slug(f"{id_dataset}_{backbone}" if backbone else id_dataset)
    seeds = sorted(cells["seed"].unique())
    mim = main_layout(cells)
    bal = bal_layout(cells).rename(columns=METRIC_LABELS)
    stands_for = cells["id_stands_for"].dropna().unique() if "id_stands_for" in cells else []
    copy = f" (a copy of {stands_for[0]})" if len(stands_for) and stands_for[0] != id_dataset else ""
    caption = (f"ID {id_dataset}{copy}, backbone {', '.join(cells['backbone'].unique())}; "
               f"{'mean over ' + str(len(seeds)) + ' seeds' if len(seeds) > 1 else 'seed ' + str(seeds[0])}")
    section = Section(id_dataset, backbone, slug, caption, mim, best_mask(mim), cell_status(cells), bal, best_mask(bal),
                      leaderboard(cells, load_scores, replicates), published_vs_reproduced(cells),
                      grouped=any(name for name, _ in ood_groups(cells)), marks=RowMarks.of(cells),
                      hygiene=hygiene_notes(cells), metrics=dict((label, metric) for metric, label in table_metrics(cells)),
                      protocol=protocol_record(cells))
    notes = [*section.marks.footnotes(), *([hygiene_footnote(section.hygiene)] if section.hygiene else [])]
    footnote = "".join(f". {note}" for note in notes)
    shown = [(section.marks.label(method), ood) for method, ood in section.hygiene]  # as exports label rows
    flagged = {"mim": set(shown), "bal": {((ood, method), column) for method, ood in shown for column in bal.columns}}
    if not attacked.empty:
        section.robust = robustness_layout(pd.concat([cells, attacked]))
        section.attacks = list(dict.fromkeys(attacked["attack"]))
        write_atomically(out / f"robustness_{slug}.md",
               to_markdown(section.marks.apply(section.robust), f"Robustness (ATOM Table 2 layout), {caption}{footnote}"))
        section.exports["robustness (md)"] = f"robustness_{slug}.md"
    for name, table, title in (("mim", mim, section.main_title), ("bal", bal, "BAL-paper layout")):
        for suffix, render in (("tex", to_latex), ("md", to_markdown)):
            file = f"{name}_{slug}.{suffix}"
            write_atomically(out / file, render(section.marks.apply(table), f"{title}, {caption}{footnote}", flagged=flagged[name]))
            section.exports[f"{name} ({suffix})"] = file
    ok = cells[cells["status"] == "ok"]
    if not ok.empty:
        section.figures = {
            "heatmap": plots.heatmap(mim.dropna(how="all")),
            "curves": plots.curves(cells, load_scores),
            "histograms": plots.histograms(cells, load_scores),
            "cost": plots.cost_vs_auroc(cells),
            "accuracy": plots.accuracy_vs_auroc(cells),
        }
    return section


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run_provenance(store: ResultStore, run_ids: list[str]) -> list[dict]:
    runs = store.runs()
    out = []
    for row in runs[runs["run_id"].isin(run_ids)].itertuples():
        provenance = json_field(row.provenance)
        out.append({
            "run_id": row.run_id, "status": row.status, "command": row.command,
            "started": pd.Timestamp(row.started, unit="s").strftime("%Y-%m-%d %H:%M:%S UTC"),
            "wall_time_s": row.wall_time_s, "git_commit": row.git_commit, "images_forwarded": row.images_forwarded,
            "stages": row.stages,
            "config": json_field(row.config),
            "versions": json_field(row.versions),
            "hardware": json_field(row.hardware),
            "datasets": provenance.get("datasets", {}), "checkpoints": provenance.get("checkpoints", {}),
            "compute": provenance.get("compute", ""), "notes": provenance.get("notes", []),
            "hygiene": provenance.get("hygiene", []),
        })
    return out


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"]),
                                     undefined=jinja2.StrictUndefined)
    environment.filters["num"] = lambda v, d=4: "" if v is None or pd.isna(v) else f"{v:.{d}f}"
    environment.filters["signed"] = lambda v, d=4: "" if v is None or pd.isna(v) else f"{v:+.{d}f}"
    environment.filters["label"] = lambda c: " / ".join(map(str, c)) if isinstance(c, tuple) else str(c)
    return environment


def build_report(store: ResultStore, selection: Selection, out: Path, replicates: int = 1000) -> Path:
    """Render the report of ``selection`` into ``out/report.html`` (exports beside it); returns its path."""
    results, run_ids = select_results(store, selection)
    out.mkdir(parents=True, exist_ok=True)
    several = results["backbone"].nunique() > 1
    parts = dict.fromkeys(zip(results["id_dataset"], results["backbone"] if several else [""] * len(results), strict=True))
    sections = [_section(results, id_dataset, backbone, out, replicates) for id_dataset, backbone in parts]
    raw = results.drop(columns=["id"], errors="ignore")
    raw.to_csv(out / "results.csv.tmp", index=False)
    os.replace(out / "results.csv.tmp", out / "results.csv")
    html = _environment().get_template("report.html.j2").render(
        title=f"oodbench report: {', '.join(run_ids) if len(run_ids) <= 3 else str(len(run_ids)) + ' runs'}",
        sections=sections, metric_card=METRIC_CARD, runs=run_provenance(store, run_ids), version=__version__,
        bal_metrics=[METRIC_LABELS[m] for m in BAL_METRICS], generated=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC"),
    )
    write_atomically(out / "report.html", html)
    return out / "report.html"
