"""The Ray executor on a multi-node test cluster (several Ray nodes on this machine, each with its own temporary
directory and, where a test says so, its own artifact cache): the records equal the local executor's, with
per-node caches and with one shared cache, and a node removed in the middle of a run has its tasks rescheduled
while the run completes and records each cell once; a driver killed in the middle of a run frees the cluster,
leaves its run interrupted, and a rerun completes it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import oodbench

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from oodbench.engine.executors.ray_executor import NODE_CACHE_ENV  # noqa: E402
from oodbench.faults import STALL_ENV, STALL_FILE_ENV  # noqa: E402

METRICS = ["auroc", "aupr_out", "fpr95_ood_pos", "fpr95_id_pos"]
KEY = ["method", "ood_dataset", "seed"]
GRID = {"methods": ["msp", "energy", "knn"], "ood": ["tiny-ood", "gaussian"], "seeds": [0, 1], "id": "tiny", "preset": "smoke",
        "quiet": True}


class LocalCluster:
    """A head node that runs no tasks and worker nodes with one CPU each, started under a short root (Ray's socket
    paths must stay short); ``env`` per node goes into its processes' environment (they inherit it when started)."""

    def __init__(self, nodes: dict[str, dict[str, str]]) -> None:
        ray.shutdown()
        self.root = Path(tempfile.mkdtemp(prefix="obr", dir="/tmp"))
        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "temp_dir": str(self.root / "head"),
                                                                     "include_dashboard": False})
        self.nodes = {}
        for name, env in nodes.items():
            saved = {key: os.environ.get(key) for key in env}
            os.environ.update(env)
            try:
                self.nodes[name] = self.cluster.add_node(num_cpus=1, temp_dir=str(self.root / name))
            finally:
                for key, value in saved.items():
                    os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        self.cluster.wait_for_nodes()

    @property
    def address(self) -> str:
        return self.cluster.address

    def node_running(self, pid: int) -> str:
        """The name of the node whose raylet started the worker process ``pid``."""
        raylets = {node.all_processes["raylet"][0].process.pid: name for name, node in self.nodes.items()}
        while pid > 1 and pid not in raylets:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
        return raylets[pid]

    def close(self) -> None:
        ray.shutdown()
        self.cluster.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def local_records(tiny_catalog, tmp_path):
    result = oodbench.run(results=tmp_path / "local", cache_dir=tmp_path / "cache-local", catalogs=[tiny_catalog], **GRID)
    assert result.ok
    return result.records.sort_values(KEY).reset_index(drop=True)


def _equal(records, local) -> None:
    records = records.sort_values(KEY).reset_index(drop=True)
    assert list(zip(records["method"], records["ood_dataset"], records["seed"], strict=True)) == \
        list(zip(local["method"], local["ood_dataset"], local["seed"], strict=True))
    np.testing.assert_array_equal(records[METRICS].to_numpy(float), local[METRICS].to_numpy(float))


def _artifacts(cache: Path) -> set[str]:
    """The stages with at least one complete artifact in ``cache``."""
    return {meta.parent.parent.name for meta in cache.glob("*/*/meta.json")}


def test_per_node_caches_give_the_local_records_and_each_node_keeps_its_own_artifacts(tiny_catalog, tmp_path, local_records):
    caches = {name: tmp_path / f"cache-{name}" for name in ("a", "b")}
    cluster = LocalCluster({name: {NODE_CACHE_ENV: str(path)} for name, path in caches.items()})
    try:
        result = oodbench.run(results=tmp_path / "ray", cache_dir=tmp_path / "cache-driver", catalogs=[tiny_catalog],
                              executor="ray", ray_address=cluster.address, **GRID)
    finally:
        cluster.close()
    assert result.ok and len(result.records) == 12
    _equal(result.records, local_records)
    found = {name: _artifacts(path) for name, path in caches.items()}
    assert found["a"] and found["b"], found  # both nodes computed, each into its own cache
    assert not _artifacts(tmp_path / "cache-driver")  # the workers never wrote the driver's path


def test_a_shared_cache_is_filled_once_and_serves_a_second_run_entirely(tiny_catalog, tmp_path, local_records):
    cluster = LocalCluster({"a": {}, "b": {}})
    try:
        options = {"cache_dir": tmp_path / "shared", "catalogs": [tiny_catalog], "executor": "ray", "ray_address": cluster.address, **GRID}
        first = oodbench.run(results=tmp_path / "ray", **options)
        second = oodbench.run(results=tmp_path / "ray", **options)
    finally:
        cluster.close()
    assert first.ok and second.ok
    _equal(first.records, local_records)
    _equal(second.records, local_records)
    assert "metrics" in _artifacts(tmp_path / "shared")
    assert not second.computed, second.computed  # every task of the second run came from the shared cache
    assert ", 0 computed" in second.stages and all(part.endswith(" 0 computed") for part in second.stages.split("; "))


def test_a_node_removed_mid_run_has_its_tasks_rescheduled_and_nothing_is_recorded_twice(tiny_catalog, tmp_path, local_records):
    stalled = tmp_path / "stalled"
    cluster = LocalCluster({name: {STALL_ENV: "extract", STALL_FILE_ENV: str(stalled), NODE_CACHE_ENV: str(tmp_path / f"cache-{name}")}
                            for name in ("a", "b")})
    removed: list[str] = []

    def remove_the_stalled_node() -> None:
        deadline = time.monotonic() + 240
        while not (stalled.exists() and stalled.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if stalled.exists():  # the first extraction holds its worker: take that worker's node away under it
            name = cluster.node_running(int(stalled.read_text()))
            cluster.cluster.remove_node(cluster.nodes[name], allow_graceful=False)
            removed.append(name)

    remover = threading.Thread(target=remove_the_stalled_node, daemon=True)
    remover.start()
    try:
        result = oodbench.run(results=tmp_path / "ray", cache_dir=tmp_path / "cache-driver", catalogs=[tiny_catalog],
                              executor="ray", ray_address=cluster.address, **GRID)
        remover.join(timeout=5)
        alive = [node["Alive"] for node in ray.nodes() if node["Resources"].get("CPU")]
    finally:
        cluster.close()
    assert removed, "no extraction task was held"
    assert alive == [True]  # the other node alone finished the run
    assert result.ok and len(result.records) == 12
    records = result.records
    assert not records.duplicated(KEY).any()
    _equal(records, local_records)


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.2)


def test_a_killed_driver_frees_the_cluster_and_a_rerun_completes_its_run(tiny_catalog, tmp_path, local_records):
    stalled = tmp_path / "stalled"
    cluster = LocalCluster({name: {STALL_ENV: "extract", STALL_FILE_ENV: str(stalled)} for name in ("a", "b")})
    command = [sys.executable, "-m", "oodbench", "run", "--preset", "smoke", "--id", "tiny", "--catalog", str(tiny_catalog),
               "--methods", ",".join(GRID["methods"]), "--ood", ",".join(GRID["ood"]), "--seeds", "0,1", "--executor", "ray",
               "--ray-address", cluster.address, "--results", str(tmp_path / "ray"), "--cache-dir", str(tmp_path / "shared")]
    try:
        driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(stalled.exists, 240, "a worker to hold an extraction")
        driver.kill()
        driver.wait(timeout=30)
        ray.init(address=cluster.address, include_dashboard=False, logging_level="WARNING")
        _wait_for(lambda: ray.available_resources().get("CPU", 0) == 2, 60, "the dead driver's tasks to be cancelled")
        ray.shutdown()
        runs = oodbench.load_results(tmp_path / "ray")  # every cell recorded before the kill is whole
        assert runs.empty or runs["status"].isin(["ok"]).all()
        from oodbench.store import ResultStore

        assert list(ResultStore(tmp_path / "ray" / "oodbench.sqlite").runs()["status"]) == ["interrupted"]
        trained = len(list((tmp_path / "shared" / "checkpoint").glob("*/meta.json")))  # a network before every extraction
        assert trained >= 1
        rerun = oodbench.run(results=tmp_path / "ray", cache_dir=tmp_path / "shared", catalogs=[tiny_catalog], executor="ray",
                             ray_address=cluster.address, **GRID)
    finally:
        cluster.close()
    assert rerun.ok
    _equal(rerun.records, local_records)
    # the networks the killed run finished came from the shared cache; only the others (of 2 seeds) were trained
    assert rerun.computed.get("checkpoint", (0, 0.0))[0] == 2 - trained
