"""The Ray executor on a real local Ray instance: same records as the local executor, retries of dead
workers, a method's failure confined to its cells, and the plan's view of resources and parallelism."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import write_plugin

import oodbench
from oodbench.cli import main

ray = pytest.importorskip("ray")

METRICS = ["auroc", "aupr_out", "fpr95_ood_pos", "fpr95_id_pos"]
KEY = ["id_dataset", "method", "ood_dataset", "seed"]


@pytest.fixture
def fresh_ray():
    """A local Ray instance of 2 CPUs started by the executor under the test's environment, shut down after."""
    ray.shutdown()
    yield
    ray.shutdown()


def _cells(records):
    return records.sort_values(KEY).reset_index(drop=True)


def test_the_smoke_grid_on_ray_records_what_the_local_executor_records(catalog, tmp_path, fresh_ray):
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    grid = {"methods": ["msp", "energy", "mahalanobis", "odin"], "ood": ["tin-crop-32", "gaussian"], "seeds": [0, 1],
            "id": "cifar10-jpeg", "preset": "smoke", "catalogs": [catalog], "quiet": True}
    local = oodbench.run(results=tmp_path / "local", cache_dir=tmp_path / "cache-local", **grid)
    on_ray = oodbench.run(results=tmp_path / "ray", cache_dir=tmp_path / "cache-ray", executor="ray", **grid)
    assert local.ok and on_ray.ok and len(on_ray.records) == 16
    np.testing.assert_array_equal(_cells(on_ray.records)[METRICS].to_numpy(float), _cells(local.records)[METRICS].to_numpy(float))
    assert on_ray.images_forwarded == local.images_forwarded and on_ray.stages == local.stages


def test_a_dead_worker_is_retried_and_a_failing_method_fails_its_cells_only(tiny_catalog, tmp_path, fresh_ray, monkeypatch):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "broken", "        raise ValueError('broken on purpose')")
    monkeypatch.setenv("OODBENCH_KILL_AT", "score:1")  # the first worker to score anything dies there
    monkeypatch.setenv("OODBENCH_KILL_ONCE", str(tmp_path / "killed"))
    common = {"methods": ["msp", "broken"], "id": "tiny", "ood": ["tiny-ood"], "preset": "smoke", "catalogs": [tiny_catalog],
              "plugins": [plugins], "quiet": True}
    result = oodbench.run(results=tmp_path / "ray", cache_dir=tmp_path / "cache-ray", executor="ray", **common)
    assert (tmp_path / "killed").is_file()  # a worker did die, and the run went on
    statuses = dict(zip(result.records["method"], result.records["status"], strict=True))
    assert statuses == {"msp": "ok", "broken": "failed"}
    assert "broken on purpose" in result.records.set_index("method").loc["broken", "error"]
    monkeypatch.delenv("OODBENCH_KILL_AT")
    local = oodbench.run(results=tmp_path / "local", cache_dir=tmp_path / "cache-local", **common)
    ok = lambda records: _cells(records[records["status"] == "ok"])[METRICS].to_numpy(float)  # noqa: E731
    np.testing.assert_array_equal(ok(result.records), ok(local.records))


def test_plan_for_ray_shows_each_tasks_resources_and_the_expected_parallelism(tiny_catalog, tmp_path, capsys):
    assert main(["plan", "--executor", "ray", "--preset", "smoke", "--id", "tiny", "--methods", "msp,mahalanobis", "--seeds", "0,1",
                 "--catalog", str(tiny_catalog), "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("kind"))
    assert all(column in header for column in ("cpus", "gpus", "memory"))
    assert re.search(r"parallelism: up to \d+ tasks at once", out) and "critical path" in out
