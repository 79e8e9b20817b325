"""The scoring contract under attack: plugins that try to tell ID from OOD by anything but their own
per-sample score, and a plugin that changes the shared network."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import run_tiny, store_rows, write_plugin

import oodbench.engine.stages.metrics as metrics_stage
from oodbench.api import Reads
from oodbench.metrics import detection_metrics
from oodbench.sandbox import unavailable


def _rows(results) -> dict[str, dict]:
    return {r["method"]: dict(r) for r in store_rows(results)}


def test_split_level_statistics_do_not_separate_id_from_ood(tiny_catalog, tmp_path, capsys):
    """tiny/test has 50 images, tiny-ood 40, gaussian 300: whole-split calls gave both plugins AUROC 1.0."""
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "splitsize", "import math\nreturn data.logits.new_full((len(data.logits),), -math.log(len(data.logits)))")
    write_plugin(plugins, "splitmean", "energy = -data.logits.logsumexp(dim=1)\nreturn energy + 100 * energy.mean()")
    code = run_tiny(tiny_catalog, tmp_path / "results", "--plugins", str(plugins), "--methods", "splitsize,splitmean,energy",
                    "--ood", "tiny-ood,gaussian")
    out = capsys.readouterr().out
    rows = [dict(r) for r in store_rows(tmp_path / "results")]
    size = [r for r in rows if r["method"] == "splitsize"]
    assert {r["status"] for r in size} == {"ok"} and {r["auroc"] for r in size} == {0.5}  # every call has the same size
    mean = {r["ood_dataset"]: r for r in rows if r["method"] == "splitmean"}
    energy = {r["ood_dataset"]: r for r in rows if r["method"] == "energy"}
    if {r["status"] for r in mean.values()} == {"failed"}:
        assert code == 1 and all("depend on the batch" in r["error"] for r in mean.values())
        assert "method splitmean failed: BatchDependent" in out
    else:  # the smoke network can collapse to near-constant energies: then the batch mean barely moves, the
        # check has nothing to catch, and the split mean adds nothing to the per-sample energy either
        assert code == 0 and all(abs(mean[ood]["auroc"] - energy[ood]["auroc"]) < 0.01 for ood in energy)
    energy = list(energy.values())
    assert {r["status"] for r in energy} == {"ok"}
    check = json.loads(energy[0]["protocol"])["scoring"]["batch_independence"]["id"]
    assert check["rows"] > 0 and check["max_deviation"] <= check["tolerance"]


TRANSDUCTIVE = '''
from oodbench.api import Method, Reads


class Centred(Method):
    """Energy standardised by its batch: uses its batch, and says so."""

    name = "centred"
    reads = frozenset({Reads.LOGITS})
    transductive = True

    def score(self, data):
        energy = -data.logits.logsumexp(dim=1)
        return (energy - energy.mean()) / (energy.std() + 1e-6)
'''


def test_a_transductive_method_is_scored_on_mixed_batches_and_marked(tiny_catalog, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "centred.py").write_text(TRANSDUCTIVE)
    args = ("--plugins", str(plugins), "--methods", "centred,msp", "--ood", "tiny-ood,gaussian")
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0
    out = capsys.readouterr().out
    rows = _rows(tmp_path / "results")
    assert rows["centred"]["status"] == "ok" and rows["centred"]["transductive"] == 1 and rows["msp"]["transductive"] == 0
    assert "centred §" in out and "§ transductive" in out


TRAINER = '''
import torch
from oodbench.api import Method, Reads


class Trainer(Method):
    """Scores with the network after running it in train mode: batch norm statistics move."""

    name = "trainer"
    reads = frozenset({Reads.IMAGES})

    def score(self, data):
        model = data.images.model
        model.train()
        scores = []
        with torch.no_grad():
            for batch in data.images:
                scores.append(-model(batch).max(dim=1).values)
        return torch.cat(scores)
'''


def test_a_plugin_that_changes_the_network_fails_and_the_others_get_the_original(tiny_catalog, tmp_path, capsys):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "trainer.py").write_text(TRAINER)
    cache = tmp_path / "cache"
    common = ("--ood", "tiny-ood,gaussian", "--cache-dir", str(cache))
    assert run_tiny(tiny_catalog, tmp_path / "alone", *common, "--methods", "msp,mahalanobis") == 0
    alone = _rows(tmp_path / "alone")
    for stage in ("extract", "score", "fit", "metrics"):  # keep the trained network, compute the rest again
        shutil.rmtree(cache / stage)
    code = run_tiny(tiny_catalog, tmp_path / "beside", *common, "--plugins", str(plugins), "--methods", "trainer,msp,mahalanobis")
    out = capsys.readouterr().out
    assert code == 1 and "method trainer failed: NetworkChanged" in out
    beside = _rows(tmp_path / "beside")
    assert beside["trainer"]["status"] == "failed" and "changed the network it was handed" in beside["trainer"]["error"]
    for method in ("msp", "mahalanobis"):
        assert beside[method]["status"] == "ok" and beside[method]["auroc"] == alone[method]["auroc"]
        for column in ("id_scores_path", "ood_scores_path"):
            assert np.array_equal(np.load(beside[method][column]), np.load(alone[method][column]))


FRAME_PEEKER = '''
import inspect

import torch
from oodbench.api import Method, Reads


class Peeker(Method):
    """Looks through its callers' frames for the split being scored and its labels."""

    name = "peeker"
    reads = frozenset({Reads.LOGITS})

    def score(self, data):
        for frame in inspect.stack():
            for value in frame.frame.f_locals.values():
                labels = getattr(value, "labels", None)
                if labels is not None and hasattr(value, "images") and len(labels) == len(data.logits):
                    return torch.full((len(data.logits),), 0.0 if int(labels.min()) >= 0 else 1.0)
        return torch.zeros(len(data.logits))
'''

MODULE_STATE = '''
import torch
from oodbench.api import Method, Reads

SEEN = []  # survives the fresh instances of one process


class Remember(Method):
    """Scores each batch against the batches it saw before."""

    name = "remember"
    reads = frozenset({Reads.LOGITS})

    def score(self, data):
        energy = -data.logits.logsumexp(dim=1)
        before = sum(SEEN) / len(SEEN) if SEEN else 0.0
        SEEN.append(float(energy.mean()))
        return energy - before
'''

CACHE_READER = '''
import json
from pathlib import Path

import numpy as np
import torch
from oodbench.api import Method, Reads

CACHE = Path({cache!r})


class Reader(Method):
    """Reads the ID test split's logits out of the artifact cache while it fits, and recognises them."""

    name = "reader"
    reads = frozenset({{Reads.LOGITS}})
    fits = True

    def fit(self, train):
        known = []
        try:
            for meta in CACHE.glob("extract/*/meta.json"):
                if json.loads(meta.read_text())["split"].endswith("/test") and "ood" not in meta.read_text():
                    known.append(np.load(meta.parent / "logits.npy")[:, :train.num_classes].round(4))
        except OSError:
            pass
        return {{"known": torch.from_numpy(np.concatenate(known)) if known else torch.zeros(0, train.num_classes)}}

    def score(self, data):
        known = self.state["known"].float()
        if len(known) == 0:
            return torch.zeros(len(data.logits))
        seen = (data.logits.round(decimals=4)[:, None, :] == known[None]).all(dim=2).any(dim=1)
        return (~seen).float()
'''


REWRITER = '''
import torch
import oodbench.engine.stages.metrics as metrics_stage
from oodbench.api import Reads
from oodbench.api import Method, Reads
from oodbench.metrics import DetectionMetrics

# module-level code: in the engine's process it would grade every method perfect
metrics_stage.detection_metrics = lambda id_scores, ood_scores: DetectionMetrics(1.0, 1.0, 1.0, 0.0, 0.0, 0.0)


class Rewriter(Method):
    name = "rewriter"
    reads = frozenset({Reads.LOGITS})

    def score(self, data):
        return torch.zeros(len(data.logits))
'''


def _cheats(tmp_path, cache) -> str:
    plugins = tmp_path / "cheats"
    plugins.mkdir()
    (plugins / "peeker.py").write_text(FRAME_PEEKER)
    (plugins / "remember.py").write_text(MODULE_STATE)
    (plugins / "reader.py").write_text(CACHE_READER.format(cache=str(cache)))
    return str(plugins)


def _separates(row: dict) -> bool:
    return row["status"] == "ok" and not 0.1 < row["auroc"] < 0.9


def test_the_cache_reader_is_a_real_attack_without_sealed(tiny_catalog, tmp_path, capsys):
    """Without --sealed, a plugin's fit() can read the artifact cache: the default run is not a sandbox."""
    cache = tmp_path / "cache"
    common = ("--ood", "tiny-ood", "--cache-dir", str(cache), "--plugins", _cheats(tmp_path, cache))
    assert run_tiny(tiny_catalog, tmp_path / "first", *common, "--methods", "msp") == 0  # the ID test extraction is cached
    run_tiny(tiny_catalog, tmp_path / "results", *common, "--methods", "reader")
    assert _separates(_rows(tmp_path / "results")["reader"])


@pytest.mark.skipif(unavailable() is not None, reason=f"no sandbox: {unavailable()}")
def test_sealed_workers_see_only_their_inputs(tiny_catalog, tmp_path, capsys):
    cache = tmp_path / "cache"
    common = ("--ood", "tiny-ood", "--cache-dir", str(cache), "--plugins", _cheats(tmp_path, cache))
    assert run_tiny(tiny_catalog, tmp_path / "first", *common, "--methods", "msp") == 0
    capsys.readouterr()
    (Path(common[-1]) / "rewriter.py").write_text(REWRITER)  # never imported by this process: its runs are sealed
    run_tiny(tiny_catalog, tmp_path / "results", *common, "--sealed", "--methods", "peeker,remember,reader,rewriter,msp,knn")
    out = capsys.readouterr().out
    assert re.search(r"sealed: fit\(\) and score\(\) run in sandboxed workers \(Landlock ABI \d+", out)
    assert re.search(r"score: 0 cached, \d+ computed", out)  # msp's scores of the first run were computed unsealed
    rows = _rows(tmp_path / "results")
    for cheat in ("peeker", "remember", "reader", "rewriter"):
        assert not _separates(rows[cheat]), rows[cheat]
    assert metrics_stage.detection_metrics is detection_metrics  # the rewriter's module code ran in the sandbox only
    assert rows["msp"]["status"] == rows["knn"]["status"] == "ok" and json.loads(rows["knn"]["protocol"])["sealed"]
    alone = _rows(tmp_path / "first")["msp"]
    assert rows["msp"]["auroc"] == alone["auroc"]


DECLARED = '''
import dataclasses
import os
from typing import Literal, Optional

import torch
from oodbench.api import Capabilities, DatasetSpec, Method, Reads

os.environ["OODBENCH_DECLARED_RAN"] = "here"  # module-level code: it must run in the sandbox only


class Declared(Method):
    """Reads features only for a large k."""

    name = "declared"
    citation = "a test plugin"
    reads = frozenset({Reads.LOGITS})
    fits = True
    search_space = {"k": (1, 5)}
    dataset_defaults = {"tiny": {"scales": (3.0,)}}

    @dataclasses.dataclass(frozen=True)
    class Params:
        k: int = 5
        mode: Literal["mean", "max"] = "mean"
        scales: tuple[float, ...] = (1.0, 2.0)
        temperature: Optional[float] = None

    def capabilities(self):
        reads = {Reads.LOGITS, Reads.FEATURES} if self.params.k > 5 else {Reads.LOGITS}
        return Capabilities(reads=frozenset(reads), fits=True)


NOT_HERE = DatasetSpec("not-here", "ood", {"test": None})
'''


@pytest.mark.skipif(unavailable() is not None, reason=f"no sandbox: {unavailable()}")
def test_a_sealed_run_learns_what_a_plugin_declares_without_importing_it(tmp_path):
    """The registry of a sealed run imports plugin files only in the sandbox and plans with stand-ins."""
    import dataclasses
    import os
    import typing

    from oodbench.params import field_types, resolve_params
    from oodbench.registry import build_registry

    (tmp_path / "declared.py").write_text(DECLARED)
    registry = build_registry([tmp_path], sealed=True)
    try:
        cls = registry.method("declared")
        assert "OODBENCH_DECLARED_RAN" not in os.environ
        assert cls.__doc__ == "Reads features only for a large k." and cls.fits and cls.search_space == {"k": (1, 5)}
        assert field_types(cls.Params) == {"k": int, "mode": typing.Literal["mean", "max"], "scales": tuple[float, ...],
                                           "temperature": typing.Optional[float]}
        assert dataclasses.asdict(resolve_params(cls, "tiny", "smoke")) == {"k": 5, "mode": "mean", "scales": (3.0,),
                                                                            "temperature": None}
        params = resolve_params(cls, "other", "smoke", {"k": "7", "mode": "max", "temperature": "0.5"})
        assert cls(cls.Params()).capabilities().reads == {Reads.LOGITS}
        assert cls(params).capabilities().reads == {Reads.LOGITS, Reads.FEATURES}  # asked of the sandbox
        with pytest.raises(RuntimeError, match="runs only in a sealed worker"):
            cls(params).score(None)
        assert any("DatasetSpec 'not-here' not loaded" in str(p) for p in registry.problems)
    finally:
        registry.sandbox.close()


@pytest.mark.skipif(unavailable() is not None, reason=f"no sandbox: {unavailable()}")
def test_a_sealed_worker_reads_code_and_nothing_else(tmp_path):
    """The sandbox probed from a worker's seat, against what this process can do."""
    import socket

    from oodbench.engine.sealed import Zygote

    secret = tmp_path / "cache" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("labels")
    server = socket.create_server(("127.0.0.1", 0))
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE.format(secret=str(secret), home=str(Path.home()), port=server.getsockname()[1]))
    namespace: dict = {}
    exec(compile(probe.read_text(), str(probe), "exec"), namespace)
    assert namespace["attempts"]() == [1.0, 1.0, 1.0, 1.0]  # all of it works here
    zygote = Zygote([probe], 1)
    try:
        job = {"kind": "score", "method": {"module": "oodbench_plugin_probe", "qualname": "Probe", "file": str(probe)},
               "params": {}, "reads": ["logits"], "num_classes": 2, "precision": "fp32", "batch": 4, "network": None}
        with zygote.worker(job) as worker:
            found = worker.call({"seed": 0}, {"logits": np.zeros((4, 2), dtype=np.float32)})["scores"]
    finally:
        zygote.close()
        server.close()
    assert found.tolist() == [0.0, 0.0, 0.0, 0.0]  # the secret, the home directory, writing /tmp, TCP to this machine
    assert not Path("/tmp/oodbench-sealed-probe").exists() or Path("/tmp/oodbench-sealed-probe").read_text() != "sealed"


PROBE = '''
import os
import socket

import torch
from oodbench.api import Method, Reads


def allowed(action):
    try:
        action()
        return 1.0
    except OSError:
        return 0.0


def write():
    with open("/tmp/oodbench-sealed-probe", "w") as handle:
        handle.write("sealed")
    os.remove("/tmp/oodbench-sealed-probe")


def attempts():
    return [
        allowed(lambda: open({secret!r}).read()),
        allowed(lambda: os.listdir({home!r})),
        allowed(write),
        allowed(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2).close()),
    ]


class Probe(Method):
    name = "probe"
    reads = frozenset({{Reads.LOGITS}})

    def score(self, data):
        return torch.tensor(attempts())
'''


def test_adding_an_ood_set_scores_only_that_set(tiny_catalog, tmp_path, capsys):
    common = ("--methods", "energy", "--cache-dir", str(tmp_path / "cache"))
    assert run_tiny(tiny_catalog, tmp_path / "results", *common, "--ood", "tiny-ood") == 0
    first = _rows(tmp_path / "results")["energy"]
    capsys.readouterr()
    assert run_tiny(tiny_catalog, tmp_path / "more", *common, "--ood", "tiny-ood,gaussian") == 0
    out = capsys.readouterr().out
    assert "score: 2 cached, 1 computed" in out  # tiny/test and tiny-ood loaded; they complete gaussian's batches
    again = [r for r in store_rows(tmp_path / "more") if r["ood_dataset"] == "tiny-ood"][0]
    assert again["auroc"] == first["auroc"] and np.array_equal(np.load(again["id_scores_path"]), np.load(first["id_scores_path"]))
