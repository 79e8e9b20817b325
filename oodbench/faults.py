"""Fault injection for the tests of interrupted runs.

``OODBENCH_KILL_AT=POINT:N`` kills the process with SIGKILL the N-th time it reaches ``POINT``:
a task kind about to run (``extract:2``, ``score:3``: the executor reaches the kind of every task,
cached or not) or ``epoch`` (right after a training epoch's resumable state is saved). With
``OODBENCH_KILL_ONCE=FILE`` only the first process to get there dies, leaving FILE behind: how a
test kills one worker of a cluster executor and sees the task retried elsewhere.

``OODBENCH_STALL_AT=POINT`` with ``OODBENCH_STALL_FILE=FILE`` makes the first process to reach ``POINT`` write its
process id into FILE and wait there until it is killed: set in the environment of a Ray test cluster's nodes, it
holds one task on the node that got it first while the test removes that node (or kills the driver). Unset, each costs one dictionary lookup per point.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

ENV = "OODBENCH_KILL_AT"
ONCE_ENV = "OODBENCH_KILL_ONCE"
STALL_ENV = "OODBENCH_STALL_AT"
STALL_FILE_ENV = "OODBENCH_STALL_FILE"
_reached: Counter[str] = Counter()


def settings() -> dict[str, str]:
    """The fault-injection variables set in this process (for a cluster executor to pass on to its workers)."""
    return {name: os.environ[name] for name in (ENV, ONCE_ENV) if os.environ.get(name)}


def reached(point: str) -> None:
    """Count ``point``; kill this process when it is the configured point and count, or hold it there."""
    if os.environ.get(STALL_ENV) == point:
        _stall(Path(os.environ[STALL_FILE_ENV]))
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


def _stall(marker: Path) -> None:
    """Write this process's id into ``marker`` and wait until the process is killed; another process that reaches the
    point goes on."""
    try:
        with open(marker, "x") as handle:
            handle.write(str(os.getpid()))
    except FileExistsError:
        return
    while True:
        time.sleep(1)
