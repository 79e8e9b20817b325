"""Fault injection for the tests of interrupted runs.

``OODBENCH_KILL_AT=POINT:N`` kills the process with SIGKILL the N-th time it reaches ``POINT``:
a task kind about to run (``extract:2``, ``score:3``: the executor reaches the kind of every task,
cached or not) or ``epoch`` (right after a training epoch's resumable state is saved). Unset, it
costs one dictionary lookup per point.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "OODBENCH_KILL_AT"
_reached: Counter[str] = Counter()


def reached(point: str) -> None:
    """Count ``point``; kill this process when it is the configured point and count."""
    target = os.environ.get(ENV)
    if not target:
        return
    _reached[point] += 1
    name, _, count = target.rpartition(":")
    if point == name and _reached[point] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)
