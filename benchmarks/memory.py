"""Peak memory of a command, for the benchmarks: ``/usr/bin/time -v``'s maximum resident set size, and
what that number is made of.

The resident set counts two kinds of pages: anonymous ones (heap, tensors, decoded batches: what the
process itself holds) and file-backed ones (the memory-mapped arrays extraction reads, the libraries):
the kernel drops the latter when memory is short and reads them again on demand, so a run whose
anonymous peak fits the machine runs there even when its resident peak is larger. Linux's
``/proc/<pid>/status`` reports both (``RssAnon``, ``RssFile``); this samples them over the command's
process tree while it runs.

With ``memory_limit`` the command runs in a new memory cgroup capped at that many bytes (cgroup v1's
``memory.limit_in_bytes`` or v2's ``memory.max``; needs root): the kernel then reclaims file-backed pages
to stay under the cap and kills the command only if what it holds itself exceeds it, so a run that
completes there runs on a machine with that much memory.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class Measured:
    returncode: int
    stdout: str
    stderr: str
    #: ``/usr/bin/time -v``'s maximum resident set size of the command, MB
    peak_rss_mb: float
    #: the largest sampled sum of anonymous resident memory over the command's processes, MB
    peak_anon_mb: float
    #: file-backed resident memory over the command's processes at that moment, MB
    file_at_peak_mb: float
    #: the cap it ran under (bytes) and the cgroup's own peak usage, page cache included (MB), when capped
    limit: int | None = None
    cgroup_peak_mb: float | None = None


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from ``/proc/<pid>/task/*/children``)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def _resident(pid: int) -> tuple[float, float]:
    """(anonymous, file-backed) resident MB of ``pid``; zeros once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    kb = {name: int(value) for name, value in re.findall(r"^(RssAnon|RssFile):\s+(\d+) kB", status, re.M)}
    return kb.get("RssAnon", 0) / 1024, kb.get("RssFile", 0) / 1024


@contextmanager
def capped(limit: int) -> Iterator[tuple[list[str], Path, str]]:
    """A fresh memory cgroup capped at ``limit`` bytes: (a prefix that runs a command in it, its folder, the
    file of its peak usage); removed afterwards."""
    hierarchies = ((Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes", "memory.max_usage_in_bytes"),  # cgroup v1
                   (Path("/sys/fs/cgroup"), "memory.max", "memory.peak"))  # cgroup v2
    found = next((h for h in hierarchies if (h[0] / "cgroup.procs").exists() and os.access(h[0], os.W_OK)), None)
    if found is None:
        raise SystemExit("a memory cap needs a writable memory cgroup (run as root on Linux)")
    root, cap, peak = found
    group = root / f"oodbench-benchmark-{os.getpid()}"
    group.mkdir()
    try:
        (group / cap).write_text(str(limit))
        yield ["sh", "-c", f'echo $$ > {group / "cgroup.procs"} && exec "$@"', "sh"], group, peak
    finally:
        time.sleep(0.5)
        group.rmdir()


def measured(command: list[str], env: dict[str, str], interval: float = 0.2, memory_limit: int | None = None) -> Measured:
    """Run ``command`` under ``/usr/bin/time -v``, sampling its processes' memory every ``interval`` s; in a
    memory cgroup capped at ``memory_limit`` bytes when given."""
    if memory_limit is None:
        return _measured(command, env, interval)
    with capped(memory_limit) as (prefix, group, peak):
        result = _measured([*prefix, *command], env, interval)
        used = int((group / peak).read_text()) / 2**20 if (group / peak).exists() else float("nan")
    return Measured(**{**result.__dict__, "limit": memory_limit, "cgroup_peak_mb": used})


def _measured(command: list[str], env: dict[str, str], interval: float) -> Measured:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(["/usr/bin/time", "-v", *command], stdout=out, stderr=err, text=True, env=env)
        peak_anon = file_at_peak = 0.0
        while process.poll() is None:
            sizes = [_resident(pid) for pid in _tree(process.pid)[1:]]  # the time process itself left out
            if not sizes:
                time.sleep(interval)
                continue
            anon = sum(a for a, _ in sizes)
            if anon > peak_anon:
                peak_anon, file_at_peak = anon, sum(f for _, f in sizes)
            time.sleep(interval)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return Measured(process.returncode, stdout, stderr, int(found.group(1)) / 1024 if found else float("nan"),
                    peak_anon, file_at_peak)


def describe(result: Measured) -> str:
    text = (f"peak resident memory {result.peak_rss_mb:.0f} MB (/usr/bin/time -v); of it, anonymous memory peaked at "
            f"{result.peak_anon_mb:.0f} MB (with {result.file_at_peak_mb:.0f} MB of file-backed pages resident then, "
            "mostly the memory-mapped arrays, which the kernel reclaims under pressure)")
    if result.limit is not None:
        text += (f"; in a memory cgroup capped at {result.limit / 2**30:.1f} GiB: "
                 f"{'completed' if result.returncode == 0 else f'FAILED (exit {result.returncode})'}, "
                 f"the cgroup's peak usage with page cache {result.cgroup_peak_mb:.0f} MB")
    return text
