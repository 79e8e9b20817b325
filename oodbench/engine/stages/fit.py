"""``fit``: a method's fitted *state* from the ID training split.

``Method.fit`` returns plain data (tensors, arrays, numbers, strings, lists and dicts of them);
it is stored with ``torch.save`` and read back with ``weights_only=True``, so a cached fit never
depends on where the plugin file lives or what its classes are called, and loading it cannot run
code. A fit that returns anything else fails its method's cells with an error that says so.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oodbench.engine.calls import plugin_call
from oodbench.engine.context import FittedState
from oodbench.engine.entries import MethodEntry
from oodbench.engine.estimate import Work
from oodbench.engine.inputs import fit_arrays, fit_inputs, held_out
from oodbench.engine.plan import Resources, Task, array_mb
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash

KIND = "fit"


def plain(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into tensors and Python numbers."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    return value


def encode_state(state: Any, method: str) -> bytes:
    """The serialised state; raises TypeError when it holds anything but plain data."""
    if not isinstance(state, dict):
        raise TypeError(f"fit() of '{method}' returned {type(state).__name__}, not a dict of its fitted state")
    buffer = io.BytesIO()
    torch.save(plain(state), buffer)
    blob = buffer.getvalue()
    try:
        decode_state(blob, torch.device("cpu"))
    except Exception as error:  # torch's unpickler names the offending type
        raise TypeError(f"fit() of '{method}' returned a state that is not plain data ({str(error).splitlines()[-1][:200]}): "
                        "return tensors, arrays, numbers, strings, and lists or dicts of them") from None
    return blob


def decode_state(blob: bytes, device: torch.device) -> Any:
    return torch.load(io.BytesIO(blob), map_location=device, weights_only=True)


def fit_method(ctx, entry: MethodEntry, network, train, extraction, rows: np.ndarray | None, seed: int, scratch: Path) -> Any:
    """``entry``'s fitted state on the declared representations of ``train`` (only ``rows`` of it, when
    given): computed on the plugin thread of this process, or under ``--sealed`` in a fresh sandboxed
    worker (which gets the inputs and a scratch directory of its own, and returns the state as bytes)."""
    if ctx.sealed is None:
        inputs = fit_inputs(ctx, entry.label, entry.caps, network, train, extraction, seed, scratch, rows, entry.layer_reads)
        torch.manual_seed(seed)
        with network.handed_to(f"method {entry.label}"):
            return plugin_call(ctx.compute.device, entry.cls(entry.params).fit, inputs)
    from oodbench.engine.scoring import sealed_job

    with ctx.sealed.worker(*sealed_job(ctx, entry, network, None, "fit")) as worker:
        blob = worker.call({"seed": seed}, fit_arrays(entry.caps, network, train, extraction, rows, entry.layer_reads))["state"]
    return decode_state(blob.tobytes(), torch.device("cpu"))


def _fit(ctx, entry: MethodEntry, network, train, extraction, tuned, holdout, seed: int, key: str, rate: str) -> FittedState:
    entry = entry.tuned_by(tuned)

    def compute(directory) -> dict:
        rows = held_out(train, holdout)
        started = time.perf_counter()
        state = fit_method(ctx, entry, network, train, extraction, rows, seed, ctx.cache.scratch(KIND, key))
        seconds = time.perf_counter() - started
        ctx.throughput.record(rate, len(train) if rows is None else len(rows), seconds)
        (directory / "state.pt").write_bytes(encode_state(state, entry.label))
        if seconds >= 1:  # a training stage worth naming (a GAN, statistics over a large split)
            ctx.say(f"  {entry.label}: fitted on {train.label} in {seconds:.0f} s")
        return {"method": entry.label, "seconds": seconds}

    def load(artifact) -> FittedState:
        blob = artifact.file("state.pt").read_bytes()
        decode_state(blob, torch.device("cpu"))
        return FittedState(blob, artifact.meta["seconds"])

    return ctx.cache.cached(KIND, key, compute, load)


def plan_fit(ctx, entry: MethodEntry, network: Task, train: PlannedSplit, extraction: Task | None, seed: int,
             row_width: int, tune: Task | None = None, holdout: PlannedSplit | None = None) -> Task:
    """The fit of ``entry`` on ``train`` as seen by ``network`` (``row_width``: logits + features per
    sample), with the parameters ``tune`` chose when it is given, without the samples of ``holdout``
    (``--tune``'s validation slice of the same split)."""
    parts = (network.key, train.key, *([tune.key] if tune else []), *([holdout.key] if holdout else []))
    key = None if None in parts else stable_hash(
        {**entry.identity(), "checkpoint": network.key, "train": train.key, "precision": ctx.compute.precision, "seed": seed,
         **({"tuned": tune.key} if tune else {}), **({"without": holdout.key} if holdout else {}), "stage": code_closure(__name__),
         **({"sealed": True} if ctx.isolated else {})})
    rate = ctx.throughput.key("fit", entry.cls.name)
    inputs = {"network": network.id, "train": train.task, **({"extraction": extraction.id} if extraction else {}),
              **({"tune": tune.id} if tune else {}), **({"holdout": holdout.task} if holdout else {})}
    label = f"{entry.label} on {train.label}" + (f" without {holdout.label}[{holdout.count}]" if holdout else "")
    return Task(f"fit:{entry.label}:{network.id}", KIND, label, key,
                lambda ctx, inputs: _fit(ctx, entry, inputs["network"], inputs["train"], inputs.get("extraction"),
                                         inputs.get("tune"), inputs.get("holdout"), seed, key, rate),
                inputs=inputs, work=Work(rate, train.count), resources=Resources(ctx.compute.device.type, array_mb(train.count, row_width)), group=entry.label)
