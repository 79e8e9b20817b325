"""Entry-point plugins, checkpoints given as files, several seeds, non-finite scores, data verify, train."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import fakes
import pytest
import torch
from helpers import run_tiny, store_rows, write_plugin

from oodbench.cli import main
from oodbench.registry import build_registry


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "oodbench_extra-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: oodbench-extra\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[oodbench.methods]\nextra = oodbench_extra_methods\n")
    (site / "oodbench_extra_methods.py").write_text(
        "from oodbench.api import Method, Reads\n"
        "class Extra(Method):\n"
        "    name = 'extra'\n"
        "    reads = frozenset({Reads.LOGITS})\n"
        "    def score(self, data):\n"
        "        return -data.logits.max(1).values\n"
    )
    monkeypatch.syspath_prepend(str(site))
    registry = build_registry()
    assert "extra" in registry.methods
    assert "entry point extra" in registry.origins[("methods", "extra")]
    sys.modules.pop("oodbench_extra_methods", None)


def test_checkpoint_file_two_seeds_and_nonfinite_scores(tiny_catalog, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "halfnan", "s = -data.logits.max(1).values\ns[(data.logits[:, 0] * 1e4).floor() % 2 == 0] = float('nan')\nreturn s")
    assert main(["train", "--id", "tiny", "--backbone", "cnn-small", "--epochs", "1",
                 "--catalog", str(tiny_catalog), "--out", str(tmp_path / "model.pt")]) == 0
    out = capsys.readouterr().out
    assert "accuracy on tiny/test" in out and (tmp_path / "model.pt").is_file()
    code = run_tiny(tiny_catalog, tmp_path / "results", "--checkpoint", str(tmp_path / "model.pt"),
                     "--seeds", "0,1", "--methods", "msp,halfnan", "--plugins", str(plugins))
    out = capsys.readouterr().out
    assert code == 1 and "nonfinite" in out and "mean over 2 seeds" in out
    rows = store_rows(tmp_path / "results")
    assert {(r["method"], r["seed"], r["status"]) for r in rows} == {
        ("msp", 0, "ok"), ("msp", 1, "ok"), ("halfnan", 0, "nonfinite"), ("halfnan", 1, "nonfinite")}
    assert all(r["checkpoint_origin"].startswith("file:") for r in rows)
    assert all(r["auroc"] is None and r["nonfinite_id"] > 0 for r in rows if r["method"] == "halfnan")
    scores = [r["id_scores_path"] for r in rows if r["method"] == "msp"]
    assert Path(scores[0]).is_file()


def test_checkpoint_that_does_not_fit_the_backbone_is_a_clear_error(tiny_catalog, tmp_path, capsys):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    code = run_tiny(tiny_catalog, tmp_path / "results", "--checkpoint", str(tmp_path / "wrong.pt"), "--methods", "msp")
    err = capsys.readouterr().err
    assert code == 2 and "wrong.pt" in err and "do not fit" in err


def test_pretrained_weights_offline_name_the_file_to_place(tmp_path, capsys):
    fakes.cifar(tmp_path / "data" / "cifar", hundred=False)
    code = main(["run", "--preset", "paper", "--id", "cifar10", "--ood", "gaussian", "--methods", "msp",
                 "--data-root", str(tmp_path / "data"), "--no-download", "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and "wrn-40-2/cifar10/crossentropy" in err and "hub" in err and "--checkpoint" in err


def test_data_verify_reports_each_split(tiny_catalog, tmp_path, capsys):
    assert main(["data", "verify", "tiny", "tiny-ood", "--catalog", str(tiny_catalog)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == 3
    (tiny_catalog.parent / "ood.zip").write_bytes(b"corrupt")
    assert main(["data", "verify", "tiny-ood", "--catalog", str(tiny_catalog)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_rows_written_together_are_one_transaction(tmp_path):
    """A write that fails in the middle (after the first row is inserted) leaves no row behind."""
    from oodbench.store import ResultStore

    store = ResultStore(tmp_path / "oodbench.sqlite")
    store.start_run("r1", command="test")
    good = {"run_id": "r1", "method": "m", "params": {}, "params_hash": "h", "backbone": "b", "checkpoint": "c",
            "id_dataset": "i", "ood_dataset": "o", "seed": 0, "status": "ok"}
    unbindable = {**good, "ood_dataset": "o2", "auroc": object()}  # sqlite3 cannot bind it: fails at the second INSERT
    with pytest.raises(sqlite3.Error):
        store.add_results([good, unbindable])
    with sqlite3.connect(tmp_path / "oodbench.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
    store.add_results([good, {**good, "ood_dataset": "o2"}])
    assert len(store.results("r1")) == 2


def test_a_store_of_an_older_schema_gains_the_new_columns(tmp_path):
    from oodbench.store import RESULT_COLUMNS, ResultStore

    database = tmp_path / "oodbench.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, run_id TEXT, method TEXT, params_hash TEXT, "
                           "checkpoint TEXT, id_dataset TEXT, ood_dataset TEXT, seed INTEGER, "
                           "UNIQUE (run_id, method, params_hash, checkpoint, id_dataset, ood_dataset, seed))")
        connection.execute("INSERT INTO results (run_id, method, params_hash, checkpoint, id_dataset, ood_dataset, seed) "
                           "VALUES ('old', 'msp', 'h', 'c', 'i', 'o', 0)")
    store = ResultStore(database)
    frame = store.results()
    assert set(RESULT_COLUMNS) <= set(frame.columns) and frame.loc[0, "method"] == "msp" and frame.loc[0, "attack"] == ""
    # the same cell under an attack is a row of its own, not a replacement of the clean one
    row = {"run_id": "old", "method": "msp", "params": {}, "params_hash": "h", "backbone": "b", "checkpoint": "c",
           "id_dataset": "i", "ood_dataset": "o", "seed": 0, "status": "ok", "attack": "atom"}
    store.add_results([row])
    assert sorted(store.results()["attack"]) == ["", "atom"]
