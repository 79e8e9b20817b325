"""Smoke-preset runs of the training-time methods through the CLI; cached reruns do not retrain."""

from __future__ import annotations

import re

import fakes
from helpers import run_tiny, store_rows

from oodbench.cli import main


def _stage_counts(out: str) -> dict[str, tuple[int, int]]:
    line = next(line for line in out.splitlines() if line.startswith("stages:"))
    return {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"(\w+): (\d+) cached, (\d+) computed", line)}


def test_mim_oe_bal_smoke_run_then_cached_rerun(tiny_catalog, tmp_path, capsys):
    args = ("--methods", "msp,mim,oe,bal", "--aux", "tiny-aux")
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0
    first = capsys.readouterr().out
    assert "mim: fine-tuned" in first and "oe: fine-tuned" in first
    assert "reduced: oe runs with epochs 1 (paper 10) under preset smoke" in first
    assert re.search(r"^oe \u2020 ", first, re.M) and "\u2020 reduced settings: " in first and re.search(r"^msp ", first, re.M)
    assert _stage_counts(first)["finetune"] == (0, 2) and _stage_counts(first)["fit"] == (0, 1)
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0
    second = capsys.readouterr().out
    assert "images through the classifier: 0" in second
    assert _stage_counts(second)["finetune"] == (2, 0) and _stage_counts(second)["fit"] == (1, 0)
    rows = store_rows(tmp_path / "results")
    by_method = {r["method"]: r for r in rows if r["run_id"] == rows[-1]["run_id"]}
    assert by_method["oe"]["aux_dataset"] == "tiny-aux" and by_method["mim"]["aux_dataset"] is None
    assert by_method["mim"]["checkpoint"] != by_method["msp"]["checkpoint"]
    assert by_method["bal"]["checkpoint"] == by_method["msp"]["checkpoint"]
    assert by_method["oe"]["train_time_s"] > 0 and by_method["msp"]["train_time_s"] is None
    assert by_method["oe"]["reduced"] == "epochs 1 (paper 10)" and by_method["msp"]["reduced"] == ""
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "report"), "--replicates", "50"]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert 'title="reduced: epochs 1 (paper 10)">&dagger;' in html and "oe: epochs 1 (paper 10)" in html
    markdown = next((tmp_path / "report").glob("mim_*.md")).read_text()
    assert "| oe \u2020 |" in markdown and "\u2020 reduced settings: oe: epochs 1 (paper 10)" in markdown


def test_training_methods_need_an_auxiliary_set_of_role_aux(tiny_catalog, tmp_path, capsys):
    # without --aux, oe uses the set it declares (the 300K Random Images): offline, a clear error naming the file
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "oe", "--no-download") == 2
    err = capsys.readouterr().err
    assert "300K_random_images.npy not found" in err and "fix:" in err
    assert store_rows(tmp_path / "results", "runs") == []
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "oe", "--aux", "tiny-ood") == 2
    assert "role 'ood'" in capsys.readouterr().err


def test_variants_rerun_a_method_with_other_parameters(tiny_catalog, tmp_path, capsys):
    code = run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp",
                    "--variant", "bal-Lt=bal:use_shuffle=false,use_uniform=false", "--variant", "bal-all=bal")
    assert code == 0
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    assert set(rows) == {"msp", "bal-Lt", "bal-all"}
    assert '"use_shuffle": false' in rows["bal-Lt"]["params"] and '"use_shuffle": true' in rows["bal-all"]["params"]


def test_cifar100_path_for_the_training_methods(tiny_catalog, tmp_path, capsys):
    fakes.cifar(tmp_path / "cifar-data" / "cifar", hundred=True, per_class_train=3, per_class_test=1)
    code = main(["run", "--preset", "smoke", "--id", "cifar100", "--ood", "gaussian", "--methods", "mim,oe,bal",
                 "--aux", "tiny-aux", "--catalog", str(tiny_catalog), "--data-root", str(tmp_path / "cifar-data"),
                 "--no-download", "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    assert '"k": 5' in rows["mim"]["params"] and '"p_aug": 1.0' in rows["mim"]["params"]


def test_a_copy_declared_same_as_gets_the_method_defaults_of_what_it_stands_for(tiny_catalog, tmp_path, capsys):
    text = tiny_catalog.read_text().replace('[datasets.tiny]\nrole = "id"', '[datasets.tiny]\nrole = "id"\nsame_as = "cifar100"')
    tiny_catalog.write_text(text)
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "mim") == 0
    (row,) = store_rows(tmp_path / "results")
    assert '"k": 5' in row["params"] and row["id_stands_for"] == "cifar100" and row["id_dataset"] == "tiny"
    # but not the published weights of what it stands for: those were trained on other pixels
    assert main(["plan", "--preset", "paper", "--id", "tiny", "--methods", "msp", "--catalog", str(tiny_catalog)]) == 2
    assert "no checkpoint of backbone 'wrn-40-2' for 'tiny'" in capsys.readouterr().err
