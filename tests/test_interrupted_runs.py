"""Kills cost nothing but time: a run killed with SIGKILL (at a named point, through the fault hook
``OODBENCH_KILL_AT``) leaves complete records only, is shown interrupted, and its rerun reuses
every finished stage, resumes training from its last epoch and records what an uninterrupted run
records."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from helpers import make_tiny_catalog

from oodbench.metrics import METRIC_NAMES
from oodbench.store import ResultStore

METHODS = "msp,mahalanobis,odin"


def _run(catalog, results, cache, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OODBENCH_KILL_AT"}
    if kill_at:
        env["OODBENCH_KILL_AT"] = kill_at
    args = ["run", "--preset", "smoke", "--id", "tiny", "--methods", METHODS, "--catalog", str(catalog),
            "--results", str(results), "--cache-dir", str(cache)]
    code = "import sys; from oodbench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600)


def _metrics(results) -> pd.DataFrame:
    store = ResultStore(results / "oodbench.sqlite")
    latest = store.results(store.latest_run_id())
    return latest.set_index(["method", "ood_dataset", "seed"]).sort_index()[list(METRIC_NAMES)]


def _images(out: str) -> int:
    return int(re.search(r"images through the classifier: (\d+)", out).group(1))


def test_a_run_killed_while_scoring_and_while_training_reruns_to_the_same_records(tmp_path):
    catalog = make_tiny_catalog(tmp_path / "data")
    clean = _run(catalog, tmp_path / "clean", tmp_path / "clean-cache")
    assert clean.returncode == 0, clean.stderr

    killed = _run(catalog, tmp_path / "results", tmp_path / "cache", kill_at="epoch:2")  # while training the classifier
    assert killed.returncode == -signal.SIGKILL
    rerun = _run(catalog, tmp_path / "results", tmp_path / "cache", kill_at="score:3")  # resumes, then dies scoring
    assert rerun.returncode == -signal.SIGKILL
    store = ResultStore(tmp_path / "results" / "oodbench.sqlite")
    runs = store.runs()
    assert runs["status"].tolist() == ["interrupted", "interrupted"] and store.latest_run_id() is None
    written = store.results()
    assert (written["status"] == "ok").all() and written[list(METRIC_NAMES)].notna().all().all()  # whole cells only

    final = _run(catalog, tmp_path / "results", tmp_path / "cache")
    assert final.returncode == 0, final.stderr
    assert _images(final.stdout) < _images(clean.stdout)  # finished extractions were not recomputed
    runs = store.runs()
    assert runs["status"].tolist() == ["interrupted", "interrupted", "complete"] and runs["run_id"].nunique() == 3
    trained = [next(iter(json.loads(p)["checkpoints"].values()))["info"] for p in runs["provenance"] if isinstance(p, str)]
    assert trained[-1]["resumed_from_epoch"] == 2
    pd.testing.assert_frame_equal(_metrics(tmp_path / "results"), _metrics(tmp_path / "clean"))


def _compute_once(root: str, name: str, started, log) -> None:
    from oodbench.engine.cache import ArtifactCache

    def compute(directory):
        log.put(name)
        started.set()
        time.sleep(0.5)
        (directory / "who.txt").write_text(name)
        return {}

    value = ArtifactCache(Path(root)).cached("stage", "key", compute, lambda artifact: artifact.file("who.txt").read_text())
    log.put(f"{name} loaded {value}")


def test_two_processes_on_one_cache_key_take_turns(tmp_path):
    context = multiprocessing.get_context("fork")
    log, started = context.Queue(), context.Event()
    first = context.Process(target=_compute_once, args=(str(tmp_path), "first", started, log))
    first.start()
    assert started.wait(30)
    second = context.Process(target=_compute_once, args=(str(tmp_path), "second", context.Event(), log))
    second.start()
    first.join(30), second.join(30)
    events = [log.get(timeout=5) for _ in range(3)]
    # the second never computed: it waited, then loaded the first's artifact (the two loads may log in either order)
    assert events[0] == "first" and sorted(events[1:]) == ["first loaded first", "second loaded first"]
