"""The sandboxed side of ``--sealed`` (:mod:`oodbench.engine.sealed`): the zygote and its workers.

Started as ``python -I`` by :class:`oodbench.engine.sealed.Zygote`. The zygote enters new user,
network, IPC and PID namespaces where the kernel permits (before anything starts a thread: a
threaded process cannot), imports the trusted code its workers share, restricts itself with
Landlock, then forks a fresh worker per job and relays frames between it and the engine. It
imports nothing but the standard library before that, and never runs plugin code itself.

Frames are a little-endian ``(header length, payload length)`` pair of 8-byte integers, a JSON
header and a payload (an ``.npz`` archive, or nothing).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import struct
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Mapping

if TYPE_CHECKING:
    import numpy as np

#: what one frame may carry
MAX_PAYLOAD = 1 << 32


class SealedError(Exception):
    """A sandboxed worker failed (its own error) or broke the protocol."""


def write_frame(stream: BinaryIO, header: Mapping[str, Any], payload: bytes = b"") -> None:
    text = json.dumps(header).encode()
    stream.write(struct.pack("<QQ", len(text), len(payload)) + text + payload)
    stream.flush()


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> tuple[dict, bytes]:
    sizes = _read_exactly(stream, 16)
    header_size, payload_size = struct.unpack("<QQ", sizes)
    if header_size > 1 << 24 or payload_size > MAX_PAYLOAD:
        raise SealedError(f"a frame of {header_size} + {payload_size} bytes is over the limit")
    header = json.loads(_read_exactly(stream, header_size))
    if not isinstance(header, dict):
        raise SealedError("a frame header is not a JSON object")
    return header, _read_exactly(stream, payload_size)


def _close_other_fds(keep: set[int]) -> None:
    """Close every file descriptor above 2 but ``keep`` (inherited pipes, the engine's files)."""
    start = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 20)


def serve() -> None:
    """The zygote (``python -I`` started by :class:`Zygote`): set up, restrict, then fork a worker per job."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    config, _ = read_frame(stdin)
    try:
        from oodbench import sandbox

        spaces: tuple[str, ...] = ()
        # before anything starts a thread: a threaded process cannot enter a new user namespace
        if sandbox.unshare(sandbox.CLONE_NEWUSER | sandbox.CLONE_NEWNET | sandbox.CLONE_NEWIPC | sandbox.CLONE_NEWPID):
            sandbox.map_root(int(config["uid"]), int(config["gid"]))
            spaces = ("user", "network", "ipc", "pid")
            child = os.fork()  # the first process of the new PID namespace serves; this one waits for it
            if child:
                _, status = os.waitpid(child, 0)
                os._exit(os.waitstatus_to_exitcode(status))
        import torch

        torch.set_num_threads(int(config["threads"]))
        for name in config["preload"]:
            importlib.import_module(name)
        for name in config["warm_up"]:
            module, _, function = name.rpartition(".")
            getattr(importlib.import_module(module), function)()
        devnull = os.open("/dev/null", os.O_RDWR)
        _close_other_fds({0, 1, 2, devnull})
        sandbox.restrict([Path(p) for p in config["read"]], [Path(config["scratch"])])
        protection = sandbox.Protection(sandbox.landlock_abi(), spaces)
    except Exception as error:  # nothing sandboxed yet: report and stop
        write_frame(stdout, {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=-3)})
        return
    write_frame(stdout, {"ok": True, "protection": protection.describe()})
    jobs = 0
    while True:
        try:
            header, payload = read_frame(stdin)
        except EOFError:
            header, payload = {"op": "quit"}, b""
        if header.get("op") == "quit":
            _reap(block=True)
            return
        if header.get("op") != "job":
            write_frame(stdout, {"ok": False, "error": f"expected a job, got {header.get('op')!r}"})
            continue
        jobs += 1
        _reap(block=False)
        _serve_job(header, payload, stdin, stdout, devnull, Path(config["scratch"]) / f"job{jobs}",
                   [Path(p) for p in config["read"]], "pid" in spaces, bool(spaces))


def _serve_job(job: dict, payload: bytes, stdin: BinaryIO, stdout: BinaryIO, devnull: int, scratch: Path, read: list[Path],
               own_pids: bool, namespaces: bool) -> None:
    scratch.mkdir(mode=0o700)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            ours.close()
            os.setsid()
            from oodbench import sandbox

            if namespaces:
                sandbox.unshare(sandbox.CLONE_NEWIPC)
                sandbox.drop_capabilities()
            _close_other_fds({theirs.fileno(), devnull})
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            sandbox.restrict(read, [scratch])
            _work(job, payload, theirs.makefile("rwb"), scratch)
        finally:
            os._exit(0)
    theirs.close()
    channel = ours.makefile("rwb")
    try:
        while True:
            header, body = read_frame(stdin)
            if header.get("op") == "end":
                break
            try:
                write_frame(channel, header, body)
                answer, result = read_frame(channel)
            except (EOFError, OSError, SealedError, json.JSONDecodeError) as error:
                answer, result = {"ok": False, "error": f"the worker ended without an answer ({error})"}, b""
            write_frame(stdout, answer, result)
    finally:
        channel.close()
        ours.close()
        if own_pids:
            os.kill(-1, signal.SIGKILL)  # the first process of a PID namespace: every other one in it
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # a killed process runs no more code: the engine goes on while the kernel tears it down, and the
        # zygote reaps it later (before the next worker, and at the end)
        shutil.rmtree(scratch, ignore_errors=True)
        write_frame(stdout, {"ok": True, "op": "ended"})


def _reap(block: bool) -> None:
    """Collect the ended workers (and what they left behind); with ``block``, wait for all of them."""
    while True:
        try:
            if os.waitpid(-1, 0 if block else os.WNOHANG)[0] <= 0:
                return
        except ChildProcessError:
            return


def _import(method: dict):
    if method["file"]:
        spec = importlib.util.spec_from_file_location(method["module"], method["file"])
        module = importlib.util.module_from_spec(spec)
        sys.modules[method["module"]] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(method["module"])
    target = module
    for part in filter(None, method["qualname"].split(".")):
        target = getattr(target, part)
    return target


def _params(cls, values: dict):
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Params)}
    return cls.Params(**{name: tuple(value) if isinstance(defaults.get(name), tuple) and isinstance(value, list) else value
                         for name, value in values.items()})


def _work(job: dict, payload: bytes, channel: BinaryIO, scratch: Path) -> None:
    """A worker: set up for the job, then answer each call (a fit, a batch to score, or a question)."""
    try:
        answer = _question(job) if job["kind"] in QUESTIONS else _method_worker(job, payload, scratch)
    except Exception as error:
        _answer_error(channel, error)
        return
    while True:
        try:
            header, body = read_frame(channel)
        except (EOFError, OSError):
            return
        try:
            write_frame(channel, {"ok": True}, _pack(answer(header, _unpack(body))))
        except Exception as error:
            _answer_error(channel, error)


#: jobs that ask about a plugin instead of running a method: what a file declares (importing it runs
#: its module-level code, here and not in the engine), and a method's capabilities for some parameters
QUESTIONS = ("describe", "capabilities")


def _question(job: dict):
    from oodbench.engine.declarations import capabilities_of, declaration

    if job["kind"] == "describe":
        found = declaration(_import({"module": job["module"], "file": job["file"], "qualname": ""}))
    else:
        cls = _import(job["method"])
        found = capabilities_of(cls(_params(cls, job["params"])))
    text = json.dumps(found).encode()
    return lambda header, values: {"json": _array(text)}


def _method_worker(job: dict, payload: bytes, scratch: Path):
    import torch

    from oodbench.engine.device import select_compute
    from oodbench.engine.stages.fit import decode_state

    cls = _import(job["method"])
    params = _params(cls, job["params"])
    arrays = _unpack(payload)
    state = decode_state(arrays["state"].tobytes(), torch.device("cpu")) if "state" in arrays else None
    compute = select_compute("cpu", job["precision"], False)
    model = None
    if job["network"] is not None:
        model = torch.load(io.BytesIO(arrays["network"].tobytes()), map_location="cpu", weights_only=False).eval()

    def answer(header: dict, values: dict) -> dict:
        if job["kind"] == "fit":
            return {"state": _array(_fit(cls, params, job, values, header, model, compute, scratch))}
        return {"scores": _score(cls, params, state, job, values, header, model, compute)}

    return answer


def _answer_error(channel: BinaryIO, error: Exception) -> None:
    try:
        write_frame(channel, {"ok": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=-4)})
    except OSError:
        pass


def _inputs(job: dict, values: dict[str, np.ndarray], model, compute) -> dict:
    import torch

    from oodbench.api import Reads
    from oodbench.engine.scoring import declared

    tensors = {name: torch.from_numpy(array) for name, array in values.items() if name != "labels"}
    return declared(frozenset(Reads(r) for r in job["reads"]), tensors, model, int(job["num_classes"]), compute, int(job["batch"]))


def _fit(cls, params, job: dict, values: dict, header: dict, model, compute, scratch: Path) -> bytes:
    import torch

    from oodbench.api import FitInputs, Reads
    from oodbench.engine.stages.fit import encode_state

    torch.manual_seed(int(header["seed"]))
    inputs = FitInputs(cls.name, frozenset(Reads(r) for r in job["reads"]), _inputs(job, values, model, compute),
                       int(job["num_classes"]), torch.from_numpy(values["labels"]), int(header["seed"]), scratch,
                       lambda iterable, **_: iterable)
    return encode_state(cls(params).fit(inputs), cls.name)


def _score(cls, params, state, job: dict, values: dict, header: dict, model, compute) -> np.ndarray:
    import torch

    from oodbench.api import Reads, ScoreInputs

    torch.manual_seed(int(header["seed"]))
    inputs = ScoreInputs(cls.name, frozenset(Reads(r) for r in job["reads"]), _inputs(job, values, model, compute),
                         int(job["num_classes"]))
    return cls(params, state=state).score(inputs).detach().float().cpu().numpy().reshape(-1)


def _array(blob: bytes):
    from oodbench.engine.sealed import as_array

    return as_array(blob)


def _pack(arrays: Mapping[str, Any]) -> bytes:
    from oodbench.engine.sealed import pack  # numpy: imported by the zygote before it forked this worker

    return pack(arrays)


def _unpack(payload: bytes) -> dict:
    from oodbench.engine.sealed import unpack

    return unpack(payload)
