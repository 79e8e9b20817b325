"""Grids in one command: several ID sets and backbones expand into one plan, records and report sections."""

from __future__ import annotations

import json
import re

import pytest
from helpers import store_rows

import oodbench
from oodbench.cli import main
from oodbench.errors import ConfigError

METRICS = ["auroc", "aupr_out", "fpr95_ood_pos"]


def _grid(catalog, results, *extra: str) -> list[str]:
    return ["--preset", "smoke", "--id", "tiny,digits", "--ood", "tiny-ood", "--methods", "msp,mahalanobis", "--seeds", "0,1",
            "--catalog", str(catalog), "--results", str(results), *extra]


def test_two_id_sets_and_two_seeds_run_in_one_command_with_a_report_section_each(tiny_catalog, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", *_grid(tiny_catalog, results)]) == 0
    out = capsys.readouterr().out
    assert "run " in out and "2 (ID set, backbone) x 2 methods x 1 OOD sets x 2 seed(s), 8/8 cells ok" in out
    assert "ID tiny, backbone cnn-small" in out and "ID digits, backbone cnn-small" in out  # a table each
    runs = store_rows(results, "runs")
    assert len(runs) == 1 and runs[0]["status"] == "complete"
    records = oodbench.load_results(results)
    assert sorted(records.groupby(["id_dataset", "backbone"]).size().items()) == [(("digits", "cnn-small"), 4), (("tiny", "cnn-small"), 4)]

    assert main(["report", "--latest", "--results", str(results), "--out", str(tmp_path / "report"), "--replicates", "50"]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert re.findall(r"<h2>(ID [^<]*)</h2>", html) == ["ID tiny", "ID digits"]
    assert (tmp_path / "report" / "mim_digits.md").is_file() and (tmp_path / "report" / "mim_tiny.md").is_file()

    # one part of the grid alone is the same work: every task is cached, and its records are equal
    capsys.readouterr()
    alone = ["--preset", "smoke", "--id", "digits", "--ood", "tiny-ood", "--methods", "msp,mahalanobis", "--seeds", "0,1",
             "--catalog", str(tiny_catalog), "--results", str(tmp_path / "alone")]
    assert main(["plan", *alone]) == 0
    assert re.search(r"(\d+) tasks: \1 cached, 0 to run", capsys.readouterr().out)
    assert main(["run", *alone]) == 0
    single = oodbench.load_results(tmp_path / "alone").sort_values(["method", "seed"]).reset_index(drop=True)
    part = records[records["id_dataset"] == "digits"].sort_values(["method", "seed"]).reset_index(drop=True)
    assert single[METRICS].equals(part[METRICS])


def test_two_backbones_share_the_decoded_data_and_get_a_network_and_batch_size_each(tiny_catalog, tmp_path):
    grid = {"methods": ["msp", "energy"], "id": "tiny", "ood": ["tiny-ood"], "preset": "smoke", "backbone": ["cnn-small", "cnn-digits"],
            "catalogs": [tiny_catalog], "results": tmp_path / "results", "quiet": True}
    planned = oodbench.plan(seeds=[0, 1], **grid).plan
    kinds = [t.kind for t in planned.tasks.values()]
    assert kinds.count("checkpoint") == 4  # 2 backbones x 2 seeds
    assert [part["backbone"] for part in planned.header["grid"]] == ["cnn-small", "cnn-digits"]
    formats = {t.id.split("@")[1].split("[")[0] for t in planned.tasks.values() if t.kind == "materialise"}
    assert formats == {"32x32x3", "8x8x1"}  # each backbone's input format, each split decoded once per format
    assert len({c.metrics for c in planned.cells}) == len(planned.cells) == 8  # 2 backbones x 2 seeds x 2 methods

    result = oodbench.run(**grid)
    assert result.ok and sorted(result.records["backbone"].value_counts().items()) == [("cnn-digits", 2), ("cnn-small", 2)]
    provenance = json.loads(store_rows(tmp_path / "results", "runs")[0]["provenance"])
    assert set(provenance["plan"]["batch_size"]) == {"cnn-small", "cnn-digits"}
    assert {key.split(" / ")[1] for key in provenance["checkpoints"]} == {"cnn-small", "cnn-digits"}


def test_a_grid_names_each_part_once_and_takes_no_single_checkpoint(tiny_catalog, tmp_path):
    with pytest.raises(ConfigError, match="more than once"):
        oodbench.plan(id=["tiny", "tiny"], preset="smoke", catalogs=[tiny_catalog], quiet=True)
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="--checkpoint gives the weights of one"):
        oodbench.plan(id=["tiny", "digits"], preset="smoke", checkpoint=str(weights), catalogs=[tiny_catalog], quiet=True)
