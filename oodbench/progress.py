"""Progress with rate and ETA for every long stage.

On a terminal: tqdm bars on stderr that disappear when done. Elsewhere (a log file, CI): a plain
line on stderr with count, rate and ETA whenever 30 seconds have passed since the last such line
(of this stage or an earlier one, so a run of many short epochs is logged too), and a closing line
for stages that took that long, so a logged batch job shows where it is. ``OODBENCH_PROGRESS=1`` forces bars,
``OODBENCH_PROGRESS=0`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
LOG_INTERVAL_S = 30.0


def _setting() -> str:
    return os.environ.get("OODBENCH_PROGRESS", "").lower()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LoggedProgress:
    """Iterates like tqdm, writing an occasional status line instead of a bar."""

    #: when any logged progress last wrote a line (shared, so short stages in a row are logged)
    last_line_at: float | None = None

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None, unit: str, interval: float = LOG_INTERVAL_S) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.unit = unit
        self.interval = interval
        self.postfix = ""

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, done: int, elapsed: float, final: bool) -> str:
        rate = done / elapsed if elapsed > 0 else 0.0
        if final:
            text = f"{self.desc}: done, {done} {self.unit} in {_clock(elapsed)} ({rate:.1f} {self.unit}/s)"
        elif self.total:
            eta = (self.total - done) / rate if rate > 0 else 0.0
            text = f"{self.desc}: {done}/{self.total} {self.unit} ({100 * done / self.total:.0f}%), {rate:.1f} {self.unit}/s, ETA {_clock(eta)}"
        else:
            text = f"{self.desc}: {done} {self.unit}, {rate:.1f} {self.unit}/s"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _print(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        LoggedProgress.last_line_at = time.monotonic()

    def __iter__(self) -> Iterator[T]:
        start = time.monotonic()
        if LoggedProgress.last_line_at is None:
            LoggedProgress.last_line_at = start
        done = 0
        for item in self.iterable:
            yield item
            done += 1
            now = time.monotonic()
            if now - LoggedProgress.last_line_at >= self.interval:
                self._print(self._line(done, now - start, final=False))
        elapsed = time.monotonic() - start
        if elapsed >= self.interval:
            self._print(self._line(done, elapsed, final=True))


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    """Wrap ``iterable`` in a progress display suited to where stderr goes (see the module doc)."""
    setting = _setting()
    if setting in {"0", "false", "no", "off"}:
        return LoggedProgress(iterable, desc, total, unit, interval=float("inf"))
    if setting in {"1", "true", "yes", "on"} or sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, mininterval=0.5)
    return LoggedProgress(iterable, desc, total, unit)
