"""Fault injection for the tests of interrupted runs.

``OODBENCH_KILL_AT=POINT:N`` kills the process with SIGKILL the N-th time it reaches ``POINT``:
a task kind about to run (``extract:2``, ``score:3``: the executor reaches the kind of every task,
cached or not) or ``epoch`` (right after a training epoch's resumable state is saved). With
``OODBENCH_KILL_ONCE=FILE`` only the first process to get there dies, leaving FILE behind: how a
test kills one worker of a cluster executor and sees the task retried elsewhere. Unset, it costs
one dictionary lookup per point.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

ENV = "OODBENCH_KILL_AT"
ONCE_ENV = "OODBENCH_KILL_ONCE"
_reached: Counter[str] = Counter()


def settings() -> dict[str, str]:
    """The fault-injection variables set in this process (for a cluster executor to pass on to its workers)."""
    return {name: os.environ[name] for name in (ENV, ONCE_ENV) if os.environ.get(name)}


def reached(point: str) -> None:
    """Count ``point``; kill this process when it is the configured point and count."""
    target = os.environ.get(ENV)
    if not target:
        return
    _reached[point] += 1
    name, _, count = target.rpartition(":")
    if point == name and _reached[point] == int(count):
        once = os.environ.get(ONCE_ENV)
        if once:
            try:
                Path(once).touch(exist_ok=False)
            except FileExistsError:  # another process died here already
                return
        os.kill(os.getpid(), signal.SIGKILL)
