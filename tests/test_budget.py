"""A run's estimate said before work starts, the preset's promise, and --time-budget choosing the backbone's epochs."""

from __future__ import annotations

import re

import pytest
from helpers import run_tiny, store_rows

from oodbench.engine.budget import Estimate, budget_epochs, estimate, parse_duration, slow_warning
from oodbench.engine.estimate import Throughput, Work
from oodbench.engine.plan import Plan, Task
from oodbench.errors import ConfigError


@pytest.mark.parametrize("text, seconds", [("20m", 1200), ("1h30m", 5400), ("1.5h", 5400), ("90s", 90), ("2m 30s", 150)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["20", "twenty minutes", "0m", "5x", "m"])
def test_a_wrong_duration_names_the_value_and_the_form(text):
    with pytest.raises(ConfigError, match="--time-budget") as raised:
        parse_duration(text)
    assert "20m" in raised.value.fix


def test_the_estimate_counts_pending_work_and_the_backbone_epochs_apart(tmp_path):
    throughput = Throughput(tmp_path / "throughput.json", "cpu-fp32")
    throughput.set("train/net/cpu-fp32", 100.0)  # images per second
    throughput.set("forward/net/cpu-fp32", 1000.0)
    plan = Plan({}, [], {})
    plan.add(Task("train", "checkpoint", "train net", "k1", lambda ctx, inputs: None,
                  work=Work("train/net/cpu-fp32", 10 * 5000, passes=10)))
    plan.add(Task("extract", "extract", "extract", "k2", lambda ctx, inputs: None, work=Work("forward/net/cpu-fp32", 60000)))
    plan.add(Task("fit", "fit", "fit", "k3", lambda ctx, inputs: None, work=Work("fit/never/cpu-fp32", 5000)))
    found = estimate(plan, throughput)
    assert (found.seconds, found.unknown, found.epoch_s, found.epochs, found.rest_s) == (560.0, 1, 50.0, 10, 60.0)
    # 20 minutes leave room for all 10 epochs, 5 minutes for (300 - 60) // 50 = 4, 30 seconds still for one
    assert [budget_epochs(found, budget) for budget in (1200, 300, 30)] == [10, 4, 1]
    assert budget_epochs(Estimate(60.0, 0, 0.0, None), 300) is None


def test_a_preset_promise_broken_on_this_device_is_said_with_the_ways_out():
    slow = Estimate(seconds=5 * 3600, unknown=0, epoch_s=600.0, epochs=25)
    warning = slow_warning(slow, "quick", 3600, "cpu (fp32)")
    assert warning.startswith("warning: preset quick is meant to take under 1h00m, and this run is estimated at 5h00m")
    for way in ("--time-budget 1h00m", "--epochs N", "--backbone", "--device cuda", "--executor ray"):
        assert way in warning
    assert slow_warning(Estimate(1800.0, 0, 60.0, 25), "quick", 3600, "cpu") is None


def test_a_run_says_its_estimate_first_and_a_time_budget_reduces_the_epochs_and_marks_every_cell(tiny_catalog, tmp_path, capsys,
                                                                                                monkeypatch):
    from oodbench.engine import estimate as rates

    monkeypatch.setattr(rates, "BUSY_SHARE", 0.0)  # the calibration counts even beside other work on this machine
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp,energy", "--epochs", "3000", "--time-budget", "2s") == 0
    out = capsys.readouterr().out
    chosen = re.search(r"--time-budget 2s: the backbone trains (\d+) of 3000 epochs", out)
    assert chosen and 1 <= int(chosen.group(1)) < 3000
    assert chosen.start() < out.index("estimate: ") < out.index("seed 0: trained:cnn-small")
    assert f"trained {chosen.group(1)} epochs" in out
    rows = store_rows(tmp_path / "results")
    assert {row["reduced"] for row in rows} == {f"backbone epochs {chosen.group(1)} (planned 3000; --time-budget 2s)"}
    assert f"\u2020 reduced settings: msp, energy: backbone epochs {chosen.group(1)} (planned 3000" in out  # said once

    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp", "--time-budget", "1h") == 0
    out = capsys.readouterr().out
    assert "--time-budget 1h00m: all 6 planned epochs fit" in out and "estimate: " in out


def test_a_budget_without_a_measured_training_speed_keeps_the_epochs_and_says_why(tiny_catalog, tmp_path, capsys, monkeypatch):
    from oodbench.engine import estimate as rates

    monkeypatch.setattr(rates, "_timed", lambda step, repeats: (0.5, 0.3))  # another process took most of the cores
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "msp", "--time-budget", "1s") == 0
    out = capsys.readouterr().out
    assert "the backbone's training speed is not measured on this device" in out and "trained 6 epochs" in out
    assert {row["reduced"] for row in store_rows(tmp_path / "results")} == {""}
