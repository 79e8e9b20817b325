"""Logged progress (stderr not a terminal): lines come at the interval even across short stages."""

from __future__ import annotations

import time

from oodbench.progress import LoggedProgress


def _run_stage(name: str, interval: float) -> None:
    for _ in LoggedProgress(range(3), name, None, "batch", interval=interval):
        time.sleep(0.02)


def test_short_stages_in_a_row_are_still_logged(capsys, monkeypatch):
    monkeypatch.setattr(LoggedProgress, "last_line_at", None)
    for epoch in range(4):  # each stage lasts 0.06 s, under the interval; together they pass it
        _run_stage(f"epoch {epoch}", interval=0.1)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all("batch/s" in line and "ETA" in line for line in lines)
    assert not any("done" in line for line in lines)


def test_a_long_stage_logs_its_count_and_a_closing_line(capsys, monkeypatch):
    monkeypatch.setattr(LoggedProgress, "last_line_at", None)
    _run_stage("extract", interval=0.03)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("extract: ") and "/3 batch" in lines[0]
    assert lines[-1].startswith("extract: done, 3 batch in 0:00:00")
