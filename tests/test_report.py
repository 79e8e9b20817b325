"""The HTML report, its exports, the leaderboard statistics, the browser check and run comparison."""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from helpers import run_tiny

from oodbench.cli import main
from oodbench.report.browser import find_chromium
from oodbench.report.export import best_mask
from oodbench.report.leaderboard import leaderboard
from oodbench.report.tables import main_layout
from oodbench.store import ResultStore


class CellParser(HTMLParser):
    """Collects the data-* attributes and text of table cells of the MIM-layout table."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "td" and "data-metric" in attributes:
            self._open = {**attributes, "text": ""}

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._open is not None:
            self.cells.append(self._open)
            self._open = None


@pytest.fixture
def two_seed_report(tiny_catalog, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp,energy,mahalanobis", "--seeds", "0,1") == 0
    assert main(["report", "--latest", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "report"),
                 "--replicates", "200"]) == 0
    assert "report:" in capsys.readouterr().out
    return tmp_path / "report", ResultStore(tmp_path / "results" / "oodbench.sqlite")


def test_mim_table_numbers_equal_the_store_at_the_shown_precision(two_seed_report):
    out, store = two_seed_report
    parser = CellParser()
    parser.feed((out / "report.html").read_text())
    results = store.results()
    assert len(parser.cells) == 3 * 2 * 2  # 3 methods x (1 OOD set + average) x 2 metrics
    for cell in parser.cells:
        rows = results[results["method"] == cell["data-method"]]
        if cell["data-ood"] != "Average":
            rows = rows[rows["ood_dataset"] == cell["data-ood"]]
        expected = rows[cell["data-metric"]].mean()
        assert cell["text"].strip() == f"{expected:.4f}", cell


def test_leaderboard_shows_mean_std_over_two_seeds_and_intervals(two_seed_report):
    out, _ = two_seed_report
    html = (out / "report.html").read_text()
    board = html[html.index('<table class="leaderboard">'):]
    board = board[: board.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", board, flags=re.S)[1:]
    assert len(rows) == 3
    for row in rows:
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        assert re.fullmatch(r"0\.\d{4}", cells[3]) and cells[4] == "2"
        assert re.fullmatch(r"\[\d\.\d{4}, \d\.\d{4}\]", cells[5])


def test_latex_export_is_booktabs_with_the_best_in_bold(two_seed_report):
    out, store = two_seed_report
    latex = (out / "mim_tiny.tex").read_text()
    assert all(rule in latex for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{tabular}"))
    assert latex.count("{") == latex.count("}")
    body = latex[latex.index(r"\midrule") + len(r"\midrule"): latex.index(r"\bottomrule")].strip().splitlines()
    columns = latex.split(r"\begin{tabular}{")[1].split("}")[0]
    assert all(line.count("&") == len(columns) - 1 and line.endswith(r"\\") for line in body)
    cells = [[c.strip() for c in line.rstrip("\\ ").split("&")] for line in body]
    for j in range(1, len(columns)):
        values = [float(re.sub(r"\\textbf\{(.*)\}", r"\1", row[j])) for row in cells]
        bold = [row[j].startswith(r"\textbf") for row in cells]
        assert bold == [v == max(values) for v in values]
    markdown = (out / "mim_tiny.md").read_text()
    for row in cells:
        plain = [re.sub(r"\\textbf\{(.*)\}", r"\1", c) for c in row]
        assert all(value in markdown for value in plain)


def test_identical_scores_are_marked_tied(tmp_path):
    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(0, 1, 300), rng.normal(1, 1, 300)
    np.save(tmp_path / "id.npy", id_scores)
    np.save(tmp_path / "ood.npy", ood_scores)
    np.save(tmp_path / "bad.npy", ood_scores - 1.5)
    rows = [{"method": m, "seed": 0, "ood_dataset": "o", "status": "ok", "id_scores_path": str(tmp_path / "id.npy"),
             "ood_scores_path": str(tmp_path / p), "auroc": a} for m, p, a in
            (("first", "ood.npy", 0.76), ("twin", "ood.npy", 0.76), ("weak", "bad.npy", 0.2))]
    board = leaderboard(pd.DataFrame(rows), np.load, replicates=200)
    assert board.loc["first", "best"] and board.loc["twin", "tied"] and not board.loc["weak", "tied"]


@pytest.mark.skipif(find_chromium() is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_report_renders_in_headless_chromium_without_errors_or_network(two_seed_report):
    from oodbench.report.browser import visit

    out, _ = two_seed_report
    page = visit(out / "report.html")
    assert page.errors == [] and page.network_requests == []
    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_marks_regressions(tiny_catalog, tmp_path, capsys):
    results = tmp_path / "results"
    assert run_tiny(tiny_catalog, results, "--methods", "msp") == 0
    store = ResultStore(results / "oodbench.sqlite")
    runs = store.runs()["run_id"].tolist()
    first = store.results(runs[0]).iloc[0].to_dict()
    worse = {**first, "run_id": "worse", "auroc": first["auroc"] - 0.1}
    store.start_run("worse", command="test")
    store.add_results([{k: v for k, v in worse.items() if k not in {"id", "created"}}])
    capsys.readouterr()
    assert main(["compare", runs[0], "worse", "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "1 regression(s) in 1 matched cells" in out
    assert main(["compare", runs[0], runs[0], "--results", str(results)]) == 0


def test_report_without_a_store_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nothing")]) == 2
    assert "no results store" in capsys.readouterr().err


def test_tables_follow_paper_order_and_group_near_and_far_ood_sets():
    cells = [("energy", 50, "far1", "far", 0.9), ("zeta", None, "near1", "near", 0.6), ("msp", 10, "near1", "near", 0.7),
             ("msp", 10, "far1", "far", 0.8), ("msp", 10, "noise", "", 0.99), ("msp", 10, "far2", "far", 1.0),
             ("energy", 50, "near1", "near", 0.5), ("energy", 50, "far2", "far", 0.7), ("energy", 50, "noise", "", 0.6)]
    results = pd.DataFrame([{"method": m, "table_order": o, "ood_dataset": d, "ood_group": g, "status": "ok", "auroc": a,
                             "aupr_out": a} for m, o, d, g, a in cells])
    table = main_layout(results)
    assert table.index.tolist() == ["msp", "energy", "zeta"]
    assert list(dict.fromkeys(table.columns.get_level_values(0))) == [
        "near1", "Near-OOD average", "far1", "far2", "Far-OOD average", "noise", "Average"]
    assert table.loc["msp", ("Far-OOD average", "AUROC")] == pytest.approx(0.9)
    assert table.loc["msp", ("Near-OOD average", "AUROC")] == pytest.approx(0.7)
    assert table.loc["msp", ("Average", "AUROC")] == pytest.approx((0.7 + 0.8 + 0.99 + 1.0) / 4)
    assert np.isnan(table.loc["zeta", ("Average", "AUROC")])  # only one of four sets scored
    ungrouped = main_layout(results.drop(columns=["ood_group", "table_order"]))
    assert ungrouped.index.tolist() == ["energy", "zeta", "msp"]  # older stores: order of appearance
    assert list(dict.fromkeys(ungrouped.columns.get_level_values(0))) == ["far1", "near1", "noise", "far2", "Average"]


def test_an_id_set_groups_ood_sets_by_name_stands_for_or_source():
    from oodbench.api import DatasetSpec
    cifar = DatasetSpec("c", "id", {}, num_classes=10, near_ood=("cifar100", "tinyimagenet"), far_ood=("mnist", "dtd"))
    assert cifar.ood_group(DatasetSpec("tin-crop-32", "ood", {}, source="tinyimagenet")) == "near"
    assert cifar.ood_group(DatasetSpec("c100-copy", "ood", {}, same_as="cifar100")) == "near"
    assert cifar.ood_group(DatasetSpec("mnist", "ood", {})) == "far"
    assert cifar.ood_group(DatasetSpec("gaussian", "ood", {})) == ""


def test_tables_with_a_block_per_ood_set_mark_the_best_within_each_block():
    rows = pd.MultiIndex.from_tuples([("a", "m1"), ("a", "m2"), ("b", "m1"), ("b", "m2")], names=["ood", "method"])
    table = pd.DataFrame({"AUROC": [0.9, 0.8, 0.6, 0.7], "FPR@95TPR(ID+)": [0.2, 0.3, 0.5, 0.5]}, index=rows)
    best = best_mask(table)
    assert best["AUROC"].tolist() == [True, False, False, True]
    assert best["FPR@95TPR(ID+)"].tolist() == [True, False, True, True]


def test_published_numbers_match_copies_through_same_as_and_carry_corrections():
    from oodbench.report.published import published_vs_reproduced

    rows = []
    for id_dataset, stands_for, method, ood, ood_stands in [("cifar10-jpeg", "cifar10", "msp", "tin-crop-copy", "tin-crop"),
                                                              ("c100-copy", "cifar100", "vim", "dtd-copy", "textures")]:
        rows.append({"id_dataset": id_dataset, "id_stands_for": stands_for, "method": method, "ood_dataset": ood,
                     "ood_stands_for": ood_stands, "status": "ok", "auroc": 0.9, "aupr_out": 0.8, "aupr_in": 0.7,
                     "fpr95_id_pos": 0.3, "fpr95_ood_pos": 0.4, "protocol": '{"name": "mim-notebook"}', "backbone": "wrn-16-2",
                     "checkpoint_origin": "trained", "n_id": 100, "seed": 0})
    table = published_vs_reproduced(pd.DataFrame(rows)).set_index(["id_dataset", "method", "ood_dataset", "metric"])
    assert set(table["protocol"]) == {"mim-notebook"} and table["our_protocol"].str.startswith("protocol mim-notebook").all()
    msp = table.loc[("cifar10", "msp", "tin-crop", "auroc")]
    assert msp["published"] == pytest.approx(0.9459) and msp["reproduced"] == pytest.approx(0.9)
    assert msp["reproduced_on"] == "cifar10-jpeg for cifar10, tin-crop-copy for tin-crop"
    vim = table.loc[("cifar100", "vim", "textures", "auroc")]
    assert vim["published"] == pytest.approx(0.9069) and "printed under the tin-crop column" in vim["correction"]
    # like with like: the MIM paper's numbers are not compared with a clean-protocol run (or an older store's rows)
    for protocol in ('{"name": "clean"}', "{}"):
        assert published_vs_reproduced(pd.DataFrame(rows).assign(protocol=protocol)).query("source.str.startswith('MIM')").empty
    # a store written before same_as was recorded: rows compare under their own names only
    old = pd.DataFrame(rows).drop(columns=["id_stands_for", "ood_stands_for"])
    assert published_vs_reproduced(old).empty


def test_openood_leaderboard_rows_compare_with_group_means_and_our_backbone():
    from oodbench.report.published import published_vs_reproduced

    protocol = '{"name": "openood-v1.5"}'
    rows = [{"id_dataset": "openood-imagenet", "id_stands_for": "openood-imagenet", "method": "msp", "ood_dataset": ood,
             "ood_stands_for": ood, "ood_group": group, "status": "ok", "auroc": auroc, "aupr_out": 0.8, "aupr_in": 0.7,
             "fpr95_id_pos": 0.3, "fpr95_ood_pos": 0.4, "protocol": protocol, "backbone": "vit-b-16", "id_accuracy": 0.81,
             "checkpoint_origin": "torchvision", "n_id": 100, "seed": 0}
            for ood, group, auroc in (("openood-imagenet-ssb-hard", "near", 0.6), ("openood-imagenet-ninco", "near", 0.8),
                                      ("openood-imagenet-textures", "far", 0.9))]
    table = published_vs_reproduced(pd.DataFrame(rows)).set_index(["ood_dataset", "metric"])
    assert set(table["source"]) == {"OpenOOD v1.5 leaderboard"} and set(table["protocol"]) == {"openood-v1.5"}
    near = table.loc[("Near-OOD average", "auroc")]
    assert near["reproduced"] == pytest.approx(0.7) and near["published"] == pytest.approx(0.7352)  # ViT-B/16's row only
    assert near["reproduced_on"] == "mean over openood-imagenet-ninco, openood-imagenet-ssb-hard"
    assert table.loc[("Far-OOD average", "auroc"), "reproduced_on"] == "mean over openood-imagenet-textures"
    accuracy = table.loc[("", "id_accuracy")]
    assert accuracy["reproduced"] == pytest.approx(0.81) and accuracy["published"] == pytest.approx(0.8114)
    # a backbone the leaderboard does not have: every published backbone's row, each naming its own
    other = published_vs_reproduced(pd.DataFrame(rows).assign(backbone="cnn-small"))
    assert set(other.query("metric == 'id_accuracy'")["their_protocol"].str.split(";").str[0]) == {"resnet50", "vit-b-16", "swin-t"}
    assert published_vs_reproduced(pd.DataFrame(rows).assign(protocol='{"name": "clean"}')).empty


def test_a_missing_optional_extra_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "websocket", None)  # as if websocket-client were not installed
    store = ResultStore(tmp_path / "results" / "oodbench.sqlite")
    store.start_run("r1", command="test")
    store.add_results([{"run_id": "r1", "method": "m", "params": {}, "params_hash": "h", "backbone": "b", "checkpoint": "c",
                        "id_dataset": "i", "ood_dataset": "o", "seed": 0, "status": "failed", "error": "x"}])
    code = main(["report", "--run", "r1", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"), "--screenshot"])
    err = capsys.readouterr().err
    assert code == 2 and "optional extra 'browser'" in err and "pip install 'oodbench[browser]'" in err
    assert "Traceback" not in err and err.count("\n") == 2


def test_a_histogram_spans_the_central_scores_and_counts_the_tail(tmp_path):
    """A long tail (a few huge Mahalanobis-like scores) does not set the histogram's range; the figure says how many
    scores it leaves out."""
    from oodbench.report.plots import histograms, robust_range

    rng = np.random.default_rng(0)
    id_scores, ood_scores = rng.normal(0, 1, 1000), np.concatenate([rng.normal(2, 1, 990), [1e6] * 10])
    pooled = np.concatenate([id_scores, ood_scores])
    low, high, outside = robust_range(np.concatenate([pooled, [np.inf]]))
    assert (low, high) == tuple(np.quantile(pooled, [0.01, 0.99])) and high < 10  # the tail is beyond the range
    assert outside == ((pooled < low) | (pooled > high)).sum() + 1 and 20 <= outside <= 42
    assert robust_range(np.full(10, 3.0)) == (3.0, 3.0, 0)
    np.save(tmp_path / "id.npy", id_scores)
    np.save(tmp_path / "ood.npy", ood_scores)
    cells = pd.DataFrame([{"method": "mahalanobis", "seed": 0, "status": "ok", "ood_dataset": "far",
                           "id_scores_path": str(tmp_path / "id.npy"), "ood_scores_path": str(tmp_path / "ood.npy")}])
    svg = histograms(cells, np.load)["mahalanobis"]
    assert f"{outside - 1} of 2000 scores beyond the 1st-99th percentile, not drawn" in svg


def test_a_changed_protocol_definition_is_a_new_version_and_a_table_over_both_says_so(tiny_catalog, tmp_path, monkeypatch, capsys):
    from oodbench.methods.energy import Energy

    results = tmp_path / "results"
    assert run_tiny(tiny_catalog, results, "--methods", "msp,energy") == 0
    first = capsys.readouterr().out
    assert "protocol clean (version " in first and "protocol versions" not in first
    # the clean protocol's definition changes: energy gets a setting of its own under it
    monkeypatch.setattr(Energy, "protocol_defaults", {**Energy.protocol_defaults, "clean": {"temperature": 2.0}})
    assert run_tiny(tiny_catalog, results, "--methods", "energy") == 0
    store = ResultStore(results / "oodbench.sqlite")
    rows = store.results()
    versions = {json.loads(p)["version"] for p in rows["protocol"]}
    assert len(versions) == 2
    second = rows.groupby("run_id")["method"].transform("nunique") == 1  # the run of energy alone
    mixed = pd.concat([rows[~second & (rows["method"] == "msp")], rows[second]])
    from oodbench.report.tables import format_terminal

    text = format_terminal(mixed)
    assert "warning: the rows come from 2 protocol versions" in text and "(version " not in text.splitlines()[0]
    assert "different data" not in text  # the same splits: only the definition changed


def test_cells_of_one_ood_set_from_different_data_are_named():
    from oodbench.report.tables import version_notes

    record = lambda data: json.dumps({"name": "clean", "version": "v1", "data": data})  # noqa: E731
    rows = pd.DataFrame({"method": ["msp", "energy", "msp"], "ood_dataset": ["a", "a", "b"],
                         "protocol": [record("d1"), record("d2"), record("d3")]})
    assert version_notes(rows) == ("warning: the cells of a come from different data (the splits' contents differ between runs)",)
    assert version_notes(rows.iloc[[0, 2]]) == ()
