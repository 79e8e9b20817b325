"""``--sealed``: a method's ``fit()`` and ``score()`` run in sandboxed worker processes.

For evaluating code you did not write (a submitted method). The engine starts one *zygote* per
process that runs plugin code: a fresh interpreter (``python -I``, no inherited file descriptors, a
minimal environment) that imports the trusted code (torch, numpy, pytorch-ood, oodbench's contract),
enters new user, network, IPC and PID namespaces where the kernel permits, and restricts itself
with Landlock (:mod:`oodbench.sandbox`) to *reading* Python's code directories, oodbench's package
directories and the plugin files, and writing one scratch directory. It never runs plugin code
itself: for every fit and every batch group of a scoring round (the round's batches, then the
check's) it forks a fresh *worker* that restricts itself further (its own Landlock domain and
scratch directory, its own IPC namespace, no capabilities), imports the method's module, and
exchanges frames with the engine through the zygote: it receives only the declared inputs and
returns only a fitted state or scores. When the group ends the worker and every process it left
behind are killed and its scratch directory is deleted.

So a worker cannot read the artifact cache, the results store, the data roots, the home directory
or anything but code; cannot write anywhere but its scratch directory; cannot reach the network
or another worker (or its memory, files, sockets, signals); and holds nothing of the engine in its
memory: no caller frames, no module state from other workers. What crosses back is parsed, never
unpickled: a JSON header and ``.npy`` arrays (``allow_pickle=False``), or a fitted state loaded with
``torch.load(weights_only=True)``.

The plugin files themselves are imported only by workers: the registry of a sealed run learns what
they declare from one (:mod:`oodbench.engine.declarations`), and its sandbox is the run's.

The sandboxed side (zygote and workers) is :mod:`oodbench.engine.zygote`. Workers compute on the CPU.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import importlib.util
import io
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from oodbench.engine.zygote import SealedError, read_frame, write_frame

#: modules the zygote imports before it restricts itself (trusted code its workers share; the built-in methods too)
PRELOAD = ("numpy", "torch", "torch.nn.functional", "pytorch_ood", "pytorch_ood.detector", "pytorch_ood.loss", "scipy",
           "sklearn", "oodbench.api", "oodbench.engine.device", "oodbench.engine.scoring", "oodbench.engine.stages.fit",
           "oodbench.models.classifier", "oodbench.sandbox", "oodbench.engine.declarations")
#: functions the zygote calls before it restricts itself, for what they cache: scikit-learn's thread-pool
#: controller lists the process's libraries from ``/proc/self/maps``, which a worker may not read
WARM_UP = ("sklearn.utils.parallel._get_threadpool_controller",)


def pack(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.ascontiguousarray(array) for name, array in arrays.items()})
    return buffer.getvalue()


def unpack(payload: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` payload, never unpickling anything."""
    if not payload:
        return {}
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def as_array(blob: bytes) -> np.ndarray:
    """Bytes as a uint8 array, to travel in an ``.npz`` payload."""
    return np.frombuffer(blob, dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class MethodRef:
    """How a worker finds a method class: its module by name, or by file (a ``--plugins`` file)."""

    module: str
    qualname: str
    file: str | None

    @classmethod
    def of(cls, method: type) -> "MethodRef":
        from oodbench.hashing import PLUGIN_PREFIX

        if not method.__module__.startswith(PLUGIN_PREFIX):
            return cls(method.__module__, method.__qualname__, None)
        # loaded from a --plugins directory, not importable by name (a sealed run's stand-in names its file)
        file = getattr(method, "plugin_file", "") or sys.modules[method.__module__].__file__
        return cls(method.__module__, method.__qualname__, str(Path(file).resolve()))


def read_grants(plugin_files: Sequence[Path]) -> list[str]:
    """What a worker may read: Python's own code (the standard library, site-packages), oodbench's
    package directories, the plugin files, the shared libraries of the system, the random devices, and
    the files that say how many CPUs there are."""
    import oodbench

    places = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.base_exec_prefix)}
    places |= {Path(p) for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)}
    places |= {Path(p) for p in oodbench.__path__}
    for name in ("methods", "datasets", "backbones", "presets", "protocols", "references"):
        spec = importlib.util.find_spec(f"oodbench.{name}")
        places |= {Path(p) for p in (spec.submodule_search_locations or [])} if spec is not None else set()
    places |= {Path(p) for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache",
                                 "/dev/urandom", "/dev/random",
                                 # how many CPUs there are (joblib, OpenMP): the machine's, not the run's
                                 "/sys/fs/cgroup", "/sys/devices/system/cpu", "/proc/cpuinfo", "/proc/meminfo")}
    places |= set(plugin_files)
    return sorted(str(p.resolve()) for p in places if p.exists())


def check_grants(grants: Sequence[str], protected: Sequence[Path]) -> None:
    """Refuse to run when a directory a worker may read holds something it must not."""
    from oodbench.errors import ConfigError

    for grant in map(Path, grants):
        for place in protected:
            place = place.resolve()
            if place == grant or grant in place.parents:
                raise ConfigError(f"--sealed: workers must read {grant} (code), which holds {place}",
                                  f"move {place} out of {grant}, or install Python and oodbench elsewhere")


class Zygote:
    """The sandboxed process that forks a fresh worker per job (see the module documentation)."""

    def __init__(self, plugin_files: Sequence[Path], threads: int) -> None:
        import oodbench

        self.grants = read_grants(plugin_files)
        self.scratch = Path(tempfile.mkdtemp(prefix="oodbench-sealed-"))
        source = str(Path(oodbench.__file__).resolve().parents[1])
        bootstrap = (f"import sys; sys.path.insert(0, {source!r}); import oodbench; oodbench.__path__[:] = {list(oodbench.__path__)!r}; "
                     "from oodbench.engine.zygote import serve; serve()")
        environment = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                       if name in os.environ}
        self.process = subprocess.Popen([sys.executable, "-I", "-c", bootstrap], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        close_fds=True, env={**environment, "HOME": str(self.scratch)}, cwd=self.scratch)
        import oodbench.methods

        builtins = [f"oodbench.methods.{module.name}" for module in pkgutil.iter_modules(oodbench.methods.__path__)]
        write_frame(self.process.stdin, {"read": self.grants, "scratch": str(self.scratch), "threads": threads,
                                          "preload": [*PRELOAD, *builtins], "warm_up": list(WARM_UP), "uid": os.getuid(),
                                          "gid": os.getgid()})
        self._protection: str | None = None

    def ready(self) -> str:
        """Wait until the zygote has set itself up (it starts while the engine plans); what it protects with."""
        if self._protection is None:
            header, _ = self._receive()
            if not header.get("ok"):
                self.close()
                from oodbench.errors import ConfigError

                raise ConfigError(f"--sealed: the sandbox could not start: {header.get('error', 'no answer')}\n"
                                  f"{header.get('traceback', '')}", "run without --sealed only for code you trust")
            self._protection = str(header["protection"])
        return self._protection

    def _receive(self) -> tuple[dict, bytes]:
        try:
            return read_frame(self.process.stdout)
        except (EOFError, json.JSONDecodeError) as error:
            raise SealedError(f"the sandbox stopped answering ({error})") from None

    def worker(self, job: Mapping[str, Any], payload: bytes = b"") -> "Worker":
        self.ready()
        write_frame(self.process.stdin, {**job, "op": "job"}, payload)
        return Worker(self)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                write_frame(self.process.stdin, {"op": "quit"})
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        shutil.rmtree(self.scratch, ignore_errors=True)


class SealedWorkers:
    """The sandbox of a process that runs plugin code sealed: its zygote, started when first needed (or
    by :meth:`start`), closed with the run and started again if asked for after that. It travels to
    another process (a Ray worker) as its settings, unstarted."""

    def __init__(self, plugin_files: Sequence[Path], threads: int) -> None:
        from oodbench.errors import ConfigError
        from oodbench.sandbox import unavailable

        why = unavailable()
        if why is not None:
            raise ConfigError(why, "run --sealed on a Linux machine with Landlock (kernel 5.13 or newer); without it, run only code you trust")
        self.plugin_files, self.threads = [Path(p) for p in plugin_files], threads
        self.zygote: Zygote | None = None

    def protect(self, places: Sequence[Path]) -> None:
        """Refuse (a :class:`~oodbench.errors.ConfigError`) when a worker could read one of ``places``."""
        check_grants(read_grants(self.plugin_files), places)

    def start(self) -> None:
        """Start the zygote, which sets itself up while the engine goes on (a run starts it before it plans)."""
        if self.zygote is None:
            self.zygote = Zygote(self.plugin_files, self.threads)
            atexit.register(self.close)

    def protection(self) -> str:
        """What the sandbox protects with, once it is set up (an error when it cannot be)."""
        self.start()
        return self.zygote.ready()

    def worker(self, job: Mapping[str, Any], payload: bytes = b"") -> "Worker":
        self.start()
        return self.zygote.worker(job, payload)

    def ask(self, job: Mapping[str, Any]) -> Any:
        """The answer of a fresh worker to a question about a plugin (:data:`oodbench.engine.zygote.QUESTIONS`), as JSON data."""
        with self.worker(job) as worker:
            return json.loads(worker.call({}, {})["json"].tobytes())

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()
            self.zygote = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "zygote": None}


def plugin_files() -> list[Path]:
    """The files of the plugins loaded from ``--plugins`` directories in this process (sealed or not)."""
    from oodbench.hashing import PLUGIN_PREFIX

    return [Path(m.__file__) for name, m in list(sys.modules.items()) if name.startswith(PLUGIN_PREFIX)]


class Worker:
    """One job's worker: ``call`` sends a frame to it and returns its answer; ``close`` ends it."""

    def __init__(self, zygote: Zygote) -> None:
        self.zygote = zygote
        self.open = True

    def call(self, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        write_frame(self.zygote.process.stdin, {**header, "op": "call"}, pack(arrays))
        answer, payload = self.zygote._receive()
        if answer.get("ok") is not True:
            text = str(answer.get("error", "the worker broke the protocol"))[:2000]
            raise SealedError(text + (f"\n{str(answer.get('traceback', ''))[-3000:]}" if answer.get("traceback") else ""))
        return unpack(payload)

    def close(self) -> None:
        if self.open:
            self.open = False
            write_frame(self.zygote.process.stdin, {"op": "end"})
            self.zygote._receive()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def method_job(entry, network, state_blob: bytes | None, device_precision: str, inference_batch: int) -> tuple[dict, bytes]:
    """The job header and payload that set a worker up for ``entry``: the method, its parameters, its
    fitted state and, when it reads images, the network."""
    import torch

    from oodbench.api import Reads

    header = {"method": dataclasses.asdict(MethodRef.of(entry.cls)), "params": dataclasses.asdict(entry.params),
              "reads": sorted(r.value for r in entry.caps.reads), "num_classes": network.model.num_classes,
              "precision": device_precision, "batch": inference_batch, "network": None}
    arrays: dict[str, np.ndarray] = {}
    if state_blob is not None:
        arrays["state"] = as_array(state_blob)
    if Reads.IMAGES in entry.caps.reads:
        model = network.model
        header["network"] = {"build": [model.net.__class__.__module__, model.net.__class__.__qualname__],
                             "outputs": model.num_outputs}
        buffer = io.BytesIO()
        torch.save(model, buffer)
        arrays["network"] = as_array(buffer.getvalue())
    return header, pack(arrays)


def attach(ctx, sandbox: SealedWorkers | None = None) -> None:
    """Give the engine context ``ctx`` of a ``--sealed`` run its sandbox (``sandbox``, the one that read the
    run's plugin files, or a new one; started on first use); a clear error where this machine has none, or
    for what it cannot seal (attacks, a GPU), rather than pretend."""
    import torch

    from oodbench.config import default_home
    from oodbench.errors import ConfigError

    config, compute = ctx.config, ctx.compute
    if config.attacks:
        raise ConfigError("--sealed with --attack: an attack follows the gradient of the method's own code, which then shapes "
                          "the images its score() sees, a channel from the attack to the scores that no sandbox closes",
                          "evaluate attacks without --sealed, on code you trust")
    if compute.device.type != "cpu":
        raise ConfigError(f"--sealed runs plugin code on the CPU; this run computes on {compute.device}",
                          "add --device cpu (sandboxed GPU workers are not supported yet)")
    ctx.sealed = sandbox or SealedWorkers(plugin_files(), torch.get_num_threads())
    ctx.sealed.protect([config.cache_dir, config.results_dir, config.data_root, default_home(), Path.home(), Path.cwd()])
