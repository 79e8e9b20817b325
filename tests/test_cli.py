"""Integration tests: the real CLI on real offline data, fake files in real formats, and plugins."""

from __future__ import annotations

import re
import zipfile

import fakes
import numpy as np
import pytest
from helpers import run_tiny, sha256, store_rows, write_plugin

from oodbench.cli import main


def test_smoke_run_on_the_offline_catalog_then_a_cached_rerun(catalog, shared_cache, tmp_path, capsys):
    args = ["run", "--preset", "smoke", "--id", "cifar10-jpeg", "--ood", "tin-crop-32,mnist-test,gaussian",
            "--methods", "msp,energy,odin,mahalanobis", "--catalog", str(catalog),
            "--cache-dir", str(shared_cache), "--results", str(tmp_path / "results")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "tin-crop-32" in first and "mahalanobis" in first and "12/12 cells ok" in first
    # cifar10-jpeg takes CIFAR-10's grouping: TinyImageNet near, MNIST far, noise in neither
    header = next(line for line in first.splitlines() if "tin-crop-32" in line and "Average" in line)
    assert re.search(r"tin-crop-32 +Near-OOD average +mnist-test +Far-OOD average +gaussian +Average", header)
    rows = [line.split()[0] for line in first.splitlines() if line.split()[:1] and line.split()[0] in {"msp", "energy", "odin", "mahalanobis"}]
    assert rows[:4] == ["msp", "odin", "mahalanobis", "energy"]  # the MIM table's order, not the command's
    assert re.search(r"images per second: .*extract \d+.*score \d+", first)  # score: odin reads images
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "images through the classifier: 0" in second and "images per second" not in second
    stages = next(line for line in second.splitlines() if line.startswith("stages:"))
    assert set(re.findall(r"(\d+) computed", stages)) == {"0"}
    assert len(store_rows(tmp_path / "results")) == 24
    runs = store_rows(tmp_path / "results", "runs")
    assert runs[0]["images_forwarded"] > 0 and runs[1]["images_forwarded"] == 0


def test_cifar100_smoke_run_on_fake_pickles(tmp_path, capsys):
    fakes.cifar(tmp_path / "data" / "cifar", hundred=True, per_class_train=3, per_class_test=1)
    code = main(["run", "--preset", "smoke", "--id", "cifar100", "--ood", "gaussian,uniform",
                 "--methods", "msp,energy,mahalanobis,vim,klmatching", "--data-root", str(tmp_path / "data"),
                 "--no-download", "--results", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ID accuracy on cifar100/test" in out and "10/10 cells ok" in out


def test_default_ood_list_of_cifar_needs_the_mim_sets(tmp_path, capsys):
    fakes.cifar(tmp_path / "data" / "cifar", hundred=False)
    code = main(["run", "--preset", "smoke", "--id", "cifar10", "--methods", "msp", "--no-download",
                 "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and "Imagenet/test not found" in err and "fix:" in err
    assert store_rows(tmp_path / "results") == []


@pytest.mark.parametrize("typo,fixed,suggested", [
    ('sha256 = "', 'sha265 = "', "sha256"),
    ('role = "ood"', 'role = "ood"\ndescrption = "crops"', "description"),
])
def test_a_misspelt_catalog_key_names_the_file_the_key_and_the_fix(tiny_catalog, tmp_path, capsys, typo, fixed, suggested):
    tiny_catalog.write_text(tiny_catalog.read_text().replace(typo, fixed, 1))
    code = run_tiny(tiny_catalog, tmp_path / "results")
    err = capsys.readouterr().err
    wrong = fixed.split("\n")[-1].split(" ")[0]
    assert code == 2
    assert str(tiny_catalog) in err and f"unknown key '{wrong}'" in err and f"did you mean '{suggested}'?" in err
    assert store_rows(tmp_path / "results", "runs") == []


@pytest.mark.parametrize("damage,message", [
    ("sha256", "sha256 of"),
    ("truncate", "not a readable zip archive"),
    ("bad-image", "cannot decode image"),
])
def test_catalog_errors_are_clear_and_write_nothing(tiny_catalog, tmp_path, capsys, damage, message):
    data = tiny_catalog.parent
    test_zip = data / "test.zip"
    if damage == "truncate":
        test_zip.write_bytes(test_zip.read_bytes()[: test_zip.stat().st_size // 2])
    elif damage == "bad-image":
        with zipfile.ZipFile(test_zip, "a") as archive:
            archive.writestr("class0/broken.png", b"\x89PNG\r\n\x1a\nnot really an image")
        text = tiny_catalog.read_text().replace("count = 50", "count = 51")
        tiny_catalog.write_text(text)
    if damage != "sha256":
        text = tiny_catalog.read_text()
        old = text.split('path = "test.zip"\nsha256 = "')[1].split('"')[0]
        tiny_catalog.write_text(text.replace(old, sha256(test_zip)))
    else:
        test_zip.write_bytes(test_zip.read_bytes() + b"appended")
    code = run_tiny(tiny_catalog, tmp_path / "results")
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "test.zip" in err and "fix:" in err
    assert err.count("error:") == 1
    assert store_rows(tmp_path / "results") == [] and store_rows(tmp_path / "results", "runs") == []


@pytest.mark.parametrize("command", ["run", "report"])
def test_a_results_file_that_is_not_a_database_is_named_and_left_alone(tiny_catalog, tmp_path, capsys, command):
    results = tmp_path / "results"
    results.mkdir()
    junk = np.random.default_rng(0).bytes(4096)
    (results / "oodbench.sqlite").write_bytes(junk)
    if command == "run":
        code = run_tiny(tiny_catalog, results, "--methods", "msp")
    else:
        code = main(["report", "--results", str(results), "--out", str(tmp_path / "report")])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert f"error: {results / 'oodbench.sqlite'} is not an oodbench results database" in captured.err
    assert "fix: move the file away, or pass --results DIR" in captured.err
    assert (results / "oodbench.sqlite").read_bytes() == junk
    assert not (tmp_path / "home" / "cache" / "checkpoint").exists()  # the run stopped before any work


def test_plugin_method_runs_next_to_builtins_and_broken_plugins_are_reported(tiny_catalog, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "confident", "return data.logits.softmax(1).max(1).values")
    (plugins / "broken.py").write_text("import not_a_module_that_exists\n")
    code = run_tiny(tiny_catalog, tmp_path / "results", "--plugins", str(plugins), "--methods", "msp,confident")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "broken.py" in captured.err and "ModuleNotFoundError" in captured.err
    assert "confident" in captured.out and "msp" in captured.out
    methods = {row["method"] for row in store_rows(tmp_path / "results")}
    assert methods == {"msp", "confident"}


def test_a_failing_method_marks_its_cells_and_the_run_goes_on(tiny_catalog, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "crash", "raise ValueError('boom')")
    code = run_tiny(tiny_catalog, tmp_path / "results", "--plugins", str(plugins), "--methods", "crash,msp")
    out = capsys.readouterr().out
    assert code == 1 and "failed" in out
    statuses = {(row["method"], row["status"]) for row in store_rows(tmp_path / "results")}
    assert statuses == {("crash", "failed"), ("msp", "ok")}


def test_unknown_names_get_a_suggestion(tiny_catalog, tmp_path, capsys):
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "mahalanobi") == 2
    assert "did you mean 'mahalanobis'" in capsys.readouterr().err


def test_list_methods_groups_the_builtins_by_what_they_need_with_citations(capsys):
    assert main(["list", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    group = {line.split("  ")[0]: None for line in lines[1:]}
    assert list(group) == ["logits only", "features", "layers", "images (re-runs the network)", "training",
                           "training, auxiliary data"]
    rows = {line.split()[-1]: line for line in lines[1:]}  # by source path
    expected = {"msp": "logits only", "gen": "logits only", "mahalanobis": "features", "react": "features",
                "rankfeat": "layers", "odin": "images (re-runs the network)", "mim": "training", "oe": "training, auxiliary data"}
    for name, needs in expected.items():
        row = next(line for path, line in rows.items() if path.endswith(f"/{name}.py"))
        assert row.startswith(needs + " ") and f" {name} " in row
    text = "\n".join(lines)
    assert "fit on ID train" in text and "ICLR 2018" in text and "last_map(map)" in text


def test_demo_runs_without_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "digits-heldout" in out and "photo-patches" in out
    ok, total = map(int, re.search(r"(\d+)/(\d+) cells ok", out).groups())
    assert ok == total >= 40


def test_materialised_arrays_outlive_their_archive(tiny_catalog, tmp_path, capsys):
    """A catalog archive removed after a run: its declared sha256 still identifies the cached arrays, so
    the rerun is cached; `data verify` and a run that must decode it again name the missing file."""
    cache = tmp_path / "cache"
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp", "--cache-dir", str(cache)) == 0
    (tiny_catalog.parent / "test.zip").unlink()
    capsys.readouterr()
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp", "--cache-dir", str(cache)) == 0
    assert "images through the classifier: 0" in capsys.readouterr().out
    assert main(["data", "verify", "tiny", "--catalog", str(tiny_catalog)]) == 1
    assert "FAILED   tiny/test: archive" in capsys.readouterr().out
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp", "--cache-dir", str(tmp_path / "fresh")) == 2
    assert "test.zip" in capsys.readouterr().err


def test_the_notebook_protocol_fits_on_the_id_test_split_and_says_so(tiny_catalog, tmp_path, capsys):
    import json

    assert main(["plan", "--preset", "smoke", "--id", "tiny", "--methods", "dice", "--protocol", "mim-notebook",
                 "--catalog", str(tiny_catalog)]) == 0
    plan = capsys.readouterr().out
    assert "protocol mim-notebook" in plan and re.search(r"^fit +dice on tiny/test ", plan, re.M)
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp,dice", "--protocol", "mim-notebook") == 0
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    dice, msp = json.loads(rows["dice"]["protocol"]), json.loads(rows["msp"]["protocol"])
    assert dice["name"] == msp["name"] == "mim-notebook" and dice["fit_split"] == "tiny/test" and msp["fit_split"] is None
    assert '"p": 0.0065' in rows["dice"]["params"]
    assert run_tiny(tiny_catalog, tmp_path / "clean", "--methods", "dice") == 0
    (clean,) = store_rows(tmp_path / "clean")
    assert json.loads(clean["protocol"])["fit_split"] == "tiny/train" and '"p": 0.9' in clean["params"]
    capsys.readouterr()
    assert run_tiny(tiny_catalog, tmp_path / "results", "--protocol", "mim-notebok") == 2
    assert "known protocols: clean, mim-notebook, openood-v1.5" in capsys.readouterr().err


def test_tune_chooses_parameters_on_validation_data_and_records_them(tiny_catalog, tmp_path, capsys):
    import json

    args = ("--methods", "msp,odin,mahalanobis", "--tune", "--tune-ood", "tiny-aux")
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0
    out = capsys.readouterr().out
    assert re.search(r"tune: odin chose eps=[\d.]+, temperature=[\d.]+ \(validation AUROC [\d.]+, tiny/train \(\d+-image slice\) "
                     r"vs tiny-aux/train\)", out)
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    tuned = json.loads(rows["odin"]["protocol"])["tuned"]
    assert tuned["validation"]["ood"] == "tiny-aux/train" and len(tuned["grid"]) == 28
    assert json.loads(rows["odin"]["params"])["eps"] == tuned["chosen"]["eps"]
    assert "tuned" not in json.loads(rows["msp"]["protocol"])  # no search space: nothing to tune
    fitted = json.loads(rows["mahalanobis"]["protocol"])
    assert fitted["fit_split"] == "tiny/train without the 40-image validation slice of --tune"
    assert fitted["tuned"]["validation"]["id"] == "tiny/train (40-image slice)"
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0
    assert "tune: 2 cached, 0 computed" in capsys.readouterr().out
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "odin", "--tune", "--tune-ood", "tiny-ood") == 2
    assert "would leak into the results" in capsys.readouterr().err
