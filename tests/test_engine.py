"""The engine's guarantees: label-free scoring, state-only fits, the plan, the Python API, the contract."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import fakes
import numpy as np
import pytest
from helpers import run_tiny, store_rows, write_plugin

import oodbench
from oodbench.cli import main

METRIC_COLUMNS = ["auroc", "aupr_in", "aupr_out", "fpr95_ood_pos", "fpr95_id_pos", "detection_error", "id_accuracy"]


def _stage_counts(out: str) -> dict[str, tuple[int, int]]:
    line = next(line for line in out.splitlines() if line.startswith("stages:"))
    return {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"(\w+): (\d+) cached, (\d+) computed", line)}


@pytest.mark.parametrize("attempt,message", [
    ("data.labels", "labels and the split's identity are hidden"),
    ("data.split", "no 'split'"),
    ("data.name", "no 'name'"),
    ("data.features", "reads 'features' but declares only ['logits']"),
])
def test_score_cannot_reach_labels_the_split_or_undeclared_inputs(tiny_catalog, tmp_path, capsys, attempt, message):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "cheat", f"peek = {attempt}\nreturn (peek < 0).float()")
    code = run_tiny(tiny_catalog, tmp_path / "results", "--plugins", str(plugins), "--methods", "cheat,msp")
    out = capsys.readouterr().out
    assert code == 1 and message in out
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    assert rows["cheat"]["status"] == "failed" and message in rows["cheat"]["error"] and rows["msp"]["status"] == "ok"


def test_every_batch_is_scored_by_a_fresh_instance(tiny_catalog, tmp_path, capsys):
    """A plugin that counts its calls on the instance sees 1 every time: it cannot tell batches apart."""
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "counter", "self.calls = getattr(self, 'calls', 0) + 1\n"
                                     "return data.logits.new_full((len(data.logits),), float(self.calls))")
    assert run_tiny(tiny_catalog, tmp_path / "results", "--plugins", str(plugins), "--methods", "counter",
                    "--ood", "tiny-ood,gaussian") == 0
    assert [r["auroc"] for r in store_rows(tmp_path / "results")] == [0.5, 0.5]


FITTED_PLUGIN = '''
import torch
from oodbench.api import Method, Reads


class Centroid(Method):
    """Distance to the mean training feature; its fitted state is that mean."""

    name = "centroid"
    reads = frozenset({Reads.FEATURES})
    fits = True

    def fit(self, train):
        return {"mean": train.features.mean(0)}

    def score(self, data):
        return (data.features - self.state["mean"]).norm(dim=1)
'''


def test_a_fit_survives_moving_the_plugin_folder_and_a_broken_fit_is_refitted(tiny_catalog, tmp_path, capsys):
    first = tmp_path / "plugins-a"
    first.mkdir()
    (first / "centroid.py").write_text(FITTED_PLUGIN)
    cache = tmp_path / "cache"
    common = ("--methods", "centroid", "--cache-dir", str(cache))
    assert run_tiny(tiny_catalog, tmp_path / "results", *common, "--plugins", str(first)) == 0
    assert _stage_counts(capsys.readouterr().out)["fit"] == (0, 1)

    moved = tmp_path / "elsewhere" / "plugins-b"
    shutil.move(first, moved)
    assert run_tiny(tiny_catalog, tmp_path / "results", *common, "--plugins", str(moved), "--ood", "tiny-ood,gaussian") == 0
    out = capsys.readouterr().out
    assert _stage_counts(out)["fit"] == (1, 0) and "2/2 cells ok" in out

    (state,) = (cache / "fit").glob("*/state.pt")
    state.write_bytes(b"not a torch file")
    assert run_tiny(tiny_catalog, tmp_path / "results", *common, "--plugins", str(moved), "--ood", "tiny-ood,uniform") == 0
    out = capsys.readouterr().out
    assert "could not be loaded" in out and "recomputing it" in out and "2/2 cells ok" in out
    assert _stage_counts(out)["fit"] == (0, 1)


def test_a_fit_that_returns_objects_fails_its_cells_with_the_reason(tiny_catalog, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "objects.py").write_text(FITTED_PLUGIN.replace('"centroid"', '"objects"').replace(
        'return {"mean": train.features.mean(0)}', 'return {"mean": train.features.mean(0), "model": torch.nn.Linear(2, 2)}'))
    assert run_tiny(tiny_catalog, tmp_path / "results", "--plugins", str(plugins), "--methods", "objects,msp") == 1
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    assert rows["objects"]["status"] == "failed" and "not plain data" in rows["objects"]["error"]


def test_importing_the_contract_loads_no_other_oodbench_module():
    code = "import sys, oodbench.api; print(sorted(m for m in sys.modules if m.split('.')[0] in ('oodbench', 'torch')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    contracts = ", ".join(f"'oodbench.api.{name}'" for name in ("backbones", "datasets", "inputs", "methods", "presets", "protocols"))
    assert loaded == f"['oodbench', 'oodbench.api', {contracts}]"


def test_plan_before_and_after_a_run(tiny_catalog, tmp_path, capsys):
    args = ["--preset", "smoke", "--id", "tiny", "--methods", "msp,mahalanobis,oe", "--aux", "tiny-aux",
            "--catalog", str(tiny_catalog), "--results", str(tmp_path / "results")]
    assert main(["plan", *args]) == 0
    before = capsys.readouterr().out
    assert re.search(r"(\d+) tasks: 0 cached, \1 to run", before) and "estimated time of the rest on this device" in before
    assert "oe trains with tiny-aux" in before
    for kind in ("materialise", "checkpoint", "finetune", "extract", "fit", "score", "metrics"):
        assert f"\n{kind} " in before
    assert store_rows(tmp_path / "results", "runs") == []  # planning runs nothing
    assert main(["run", *args]) == 0
    capsys.readouterr()
    assert main(["plan", *args]) == 0
    after = capsys.readouterr().out
    assert re.search(r"(\d+) tasks: \1 cached, 0 to run", after) and "of the rest on this device: none, everything is cached" in after


def test_plan_of_the_headline_command_offline_names_each_download(tmp_path, capsys, monkeypatch):
    """`oodbench plan --methods mim,oe,bal --id cifar100` with CIFAR-100 and TinyImages300k in their real
    formats and the OOD sets not downloaded: the plan resolves and says what each waiting task needs."""
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    fakes.cifar(tmp_path / "home" / "data" / "cifar", hundred=True)
    fakes.tinyimages300k(tmp_path / "home" / "data" / "tinyimages300k")
    assert main(["plan", "--methods", "mim,oe,bal", "--id", "cifar100"]) == 0
    out = capsys.readouterr().out
    assert "preset: quick" in out and "oe trains with tinyimages300k" in out
    assert "cifar100/train" in out and "tinyimages300k/train" in out
    for waiting in ("tin-crop/test", "lsun-resize/test", "textures/test", "places365/test", "svhn/test"):
        line = next(line for line in out.splitlines() if waiting in line and line.startswith("materialise"))
        assert "waits" in line and "download http" in line
    assert "waiting for downloads" in out


def test_python_api_and_cli_give_equal_records(catalog, tmp_path, capsys):
    grid = {"methods": ["msp", "energy", "mahalanobis", "odin"], "ood": ["tin-crop-32", "gaussian"], "seeds": [0, 1]}
    result = oodbench.run(id="cifar10-jpeg", preset="smoke", catalogs=[catalog], results=tmp_path / "api",
                          cache_dir=tmp_path / "cache-api", quiet=True, **grid)
    assert main(["run", "--preset", "smoke", "--id", "cifar10-jpeg", "--methods", ",".join(grid["methods"]),
                 "--ood", ",".join(grid["ood"]), "--seeds", "0,1", "--catalog", str(catalog),
                 "--results", str(tmp_path / "cli"), "--cache-dir", str(tmp_path / "cache-cli")]) == 0
    cli = oodbench.load_results(tmp_path / "cli")
    keys = ["method", "ood_dataset", "seed"]
    api, cli = result.records.sort_values(keys).reset_index(drop=True), cli.sort_values(keys).reset_index(drop=True)
    assert len(api) == 16 and result.ok and api[keys].equals(cli[keys])
    np.testing.assert_array_equal(api[METRIC_COLUMNS].to_numpy(float), cli[METRIC_COLUMNS].to_numpy(float))
    id_scores, ood_scores = result.scores("odin", "tin-crop-32", seed=1)
    assert len(id_scores) == 300 and len(ood_scores) == 300 and np.isfinite(id_scores).all()


def test_the_headline_command_runs_as_typed(tmp_path, capsys, monkeypatch):
    """`oodbench run --methods mim,oe,bal --id cifar100`, nothing else: on a CPU it picks the quick preset,
    OE takes the auxiliary set it declares, every dataset comes from its download (fake files in the
    real formats stand in for them here)."""
    data = tmp_path / "home" / "data"
    fakes.cifar(data / "cifar", hundred=True)
    fakes.tinyimages300k(data / "tinyimages300k")
    fakes.odin(data / "odin")
    fakes.textures(data / "textures")
    fakes.places365(data / "places365")
    fakes.svhn(data / "svhn")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--methods", "mim,oe,bal", "--id", "cifar100"]) == 0
    out = capsys.readouterr().out
    assert "preset: quick" in out and "aux: oe trains with tinyimages300k (the method's default" in out
    assert "3 methods x 7 OOD sets x 1 seed(s), 21/21 cells ok" in out
    rows = {r["method"]: r for r in store_rows(tmp_path / "results")}
    assert rows["oe"]["aux_dataset"] == "tinyimages300k" and '"epochs": 2' in rows["oe"]["params"]
    assert '"k": 5' in rows["mim"]["params"]


OUTLIER_CLASS_PLUGIN = '''
import torch
import torch.nn.functional as F
from oodbench.api import Method, Reads


class ExtraClass(Method):
    """Adds an outlier output and trains it on auxiliary images; scores with its probability."""

    name = "extraclass"
    reads = frozenset({Reads.LOGITS, Reads.ALL_LOGITS})
    trains = True
    uses_aux = True

    def train(self, context):
        model = context.model
        model.add_outputs(1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        k = context.num_classes
        for start in range(0, 48, 16):
            x_in = context.pixels(context.id_images[start : start + 16])
            x_out = context.pixels(context.aux_images[start : start + 16])
            y = torch.as_tensor(context.id_labels[start : start + 16]).to(context.device)
            with context.precision():
                logits = model(torch.cat([x_in, x_out])).float()
            loss = F.cross_entropy(logits[:16], y) + F.cross_entropy(logits[16:], torch.full((16,), k, device=context.device))
            context.backward_step(loss, optimizer)
        return {}

    def score(self, data):
        assert data.all_logits.shape[1] == data.num_classes + 1 and data.logits.shape[1] == data.num_classes
        return data.all_logits.softmax(1)[:, -1]
'''


def test_a_network_with_an_added_outlier_class_round_trips_through_the_cache(tiny_catalog, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "extraclass.py").write_text(OUTLIER_CLASS_PLUGIN)
    args = ("--plugins", str(plugins), "--methods", "extraclass,msp", "--aux", "tiny-aux", "--cache-dir", str(tmp_path / "cache"))
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0
    first = {r["method"]: r for r in store_rows(tmp_path / "results")}
    capsys.readouterr()
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0  # the (K+1)-output network is rebuilt from the cache
    out = capsys.readouterr().out
    assert "images through the classifier: 0" in out and _stage_counts(out)["finetune"] == (1, 0)
    again = {r["method"]: r for r in store_rows(tmp_path / "results") if r["run_id"] != first["msp"]["run_id"]}
    assert again["extraclass"]["auroc"] == first["extraclass"]["auroc"]
    assert 0 <= first["extraclass"]["id_accuracy"] <= 1 and first["extraclass"]["status"] == "ok"


def test_every_extraction_a_task_reads_is_of_the_split_it_reads(tiny_catalog, tmp_path):
    """A task given a split and an extraction gets the extraction of that very split: subsets of one split
    (the full training split to fit on, a slice of it to tune on) are distinct tasks, not one under one name."""
    planned = oodbench.plan(methods=["mahalanobis", "odin", "knn"], id="tiny", preset="smoke", tune=True, ood=["tiny-ood"],
                            catalogs=[tiny_catalog], results=tmp_path / "results", quiet=True, train_limit=None).plan
    paired = 0
    for task in planned.tasks.values():
        for name, extraction in task.inputs.items():
            if not name.endswith("extraction"):
                continue
            prefix = name.removesuffix("extraction")
            split = next(task.inputs[n] for n in (prefix + "split", prefix.rstrip("_"), "split", "train") if n in task.inputs)
            assert planned.tasks[extraction].inputs["split"] == split, (task.id, name)
            paired += 1
    assert paired and any(t.kind == "tune" for t in planned.tasks.values())
