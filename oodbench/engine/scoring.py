"""How a method's scores are computed: mixed batches of declared representations, one plugin call each.

Every stage that scores (``score``, ``tune``, ``attack``) describes its round as :class:`Part` s
(rows, role, whether their scores are wanted) with a :class:`RowSource` each (where the rows'
representations come from), and :func:`score_parts` does the rest: the batch layout and the
batch-independence check of :mod:`oodbench.engine.mixing`, the :class:`~oodbench.api.ScoreInputs`
of each batch (declared representations only: no labels, names, roles, or sizes), a fresh method
instance per batch called on the plugin thread (:mod:`oodbench.engine.calls`), randomness seeded per
batch from the round's key, and the network checked afterwards (:meth:`Network.handed_to`).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from oodbench.api import Capabilities, Head, ImageBatches, Reads, ScoreInputs
from oodbench.data.arrays import SplitArrays
from oodbench.data.batches import take, to_pixels
from oodbench.engine.calls import plugin_call
from oodbench.engine.context import Extraction, Network
from oodbench.engine.entries import MethodEntry
from oodbench.engine.mixing import Check, Part, Rows, batch_size, score_round
from oodbench.engine.stages.fit import decode_state
from oodbench.hashing import stable_hash
from oodbench.models.layers import LAYER_PREFIX, LayerRead, captured, layer_key
from oodbench.progress import progress


@dataclass(frozen=True)
class RowSource:
    """Where one part's rows come from: uint8 ``N x H x W x C`` images (a split) or float pixels
    ``N x C x H x W`` on the device (attacked images), and their logits, features and layers (by
    :func:`~oodbench.models.layers.layer_key`) when extracted."""

    images: Any = None
    logits: Any = None
    features: Any = None
    layers: Mapping[str, Any] = field(default_factory=dict)


def split_rows(split: SplitArrays, extraction: Extraction | None) -> RowSource:
    """A split's images and, when the method reads them, its extraction's logits, features and layers."""
    if extraction is None:
        return RowSource(split.images)
    return RowSource(split.images, extraction.logits, extraction.features, extraction.layers)


@torch.no_grad()
def forwarded_rows(ctx, network: Network, pixels: torch.Tensor, caps: Capabilities, layers: Sequence[LayerRead] = ()) -> RowSource:
    """Float pixels on the device (attacked images) and, when the method reads extracted representations,
    their logits, features and ``layers`` from one pass through the network."""
    if not caps.extracted:
        return RowSource(pixels)
    outputs, pooled, kept = [], [], {layer_key(read): [] for read in layers}
    with captured(network.model.net, network.model.layer_paths, layers) as values:
        for chunk in pixels.split(ctx.batch_for(network)):
            with ctx.compute.autocast():
                out, feats = network.model.forward_with_features(chunk)
            outputs.append(out.float())
            pooled.append(feats.float())
            for key, value in values.items():
                kept[key].append(value)
            ctx.forwarded(len(chunk))
    return RowSource(pixels, torch.cat(outputs), torch.cat(pooled), {key: torch.cat(parts) for key, parts in kept.items()})


def _gather(arrays: Sequence[Any], parts: np.ndarray, local: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``local`` of ``arrays[parts]``, in batch order, as one tensor on ``device``."""
    out = None
    for part in np.unique(parts):
        where = np.flatnonzero(parts == part)
        source = arrays[part]
        if isinstance(source, torch.Tensor):
            chunk = source[torch.from_numpy(local[where]).to(source.device)].to(device)
        else:
            chunk = torch.from_numpy(np.ascontiguousarray(np.asarray(source)[local[where]])).to(device)
        if out is None:
            out = torch.empty((len(parts), *chunk.shape[1:]), dtype=chunk.dtype, device=device)
        out[torch.from_numpy(where).to(device)] = chunk
    return out


def batch_values(caps: Capabilities, sources: Sequence[RowSource], parts: np.ndarray, local: np.ndarray,
                 device: torch.device, layers: Sequence[LayerRead] = ()) -> dict[str, torch.Tensor]:
    """The rows of one batch (``parts``: each row's part; ``local``: its row there) of what the method
    reads: ``logits`` (every output), ``features`` and each of ``layers`` (``"layers.<name>"``) on
    ``device``, and ``images``: uint8 ``B x H x W x C`` on the CPU, or float pixels ``B x C x H x W`` on
    ``device`` when attacked images are among them."""
    values: dict[str, torch.Tensor] = {}
    if Reads.LOGITS in caps.reads or Reads.ALL_LOGITS in caps.reads:
        values["logits"] = _gather([s.logits for s in sources], parts, local, device).float()
    if Reads.FEATURES in caps.reads:
        values["features"] = _gather([s.features for s in sources], parts, local, device).float()
    for read in layers:
        values[LAYER_PREFIX + read[0]] = _gather([s.layers[layer_key(read)] for s in sources], parts, local, device).float()
    if Reads.IMAGES in caps.reads:
        floats = [isinstance(s.images, torch.Tensor) and s.images.is_floating_point() for s in sources]
        if not any(floats):
            values["images"] = _gather([s.images for s in sources], parts, local, torch.device("cpu"))
        else:
            pixels = [s.images if is_float else None for s, is_float in zip(sources, floats, strict=True)]
            out = torch.empty((len(parts), *next(p for p in pixels if p is not None).shape[1:]), device=device)
            for part in np.unique(parts):
                where = np.flatnonzero(parts == part)
                rows = (pixels[part][torch.from_numpy(local[where]).to(pixels[part].device)] if pixels[part] is not None
                        else to_pixels(take(sources[part].images, local[where]), device, False))
                out[torch.from_numpy(where).to(device)] = rows.to(device)
            values["images"] = out
    return values


def declared(reads: frozenset[Reads], values: dict[str, torch.Tensor], model, num_classes: int, compute, sub_batch: int,
             on_images=None) -> dict[Reads, Any]:
    """What a method that declared ``reads`` is handed of ``values`` (see :func:`batch_values`; also
    ``head_weight`` / ``head_bias`` in a sealed worker), with ``model`` for those that read images."""
    out: dict[Reads, Any] = {}
    if "logits" in values:
        if Reads.LOGITS in reads:
            out[Reads.LOGITS] = values["logits"][:, :num_classes]
        if Reads.ALL_LOGITS in reads:
            out[Reads.ALL_LOGITS] = values["logits"]
    if "features" in values and Reads.FEATURES in reads:
        out[Reads.FEATURES] = values["features"]
    if Reads.LAYERS in reads:
        out[Reads.LAYERS] = {name[len(LAYER_PREFIX):]: value for name, value in values.items() if name.startswith(LAYER_PREFIX)}
    if Reads.HEAD in reads:
        out[Reads.HEAD] = Head(values["head_weight"], values["head_bias"]) if "head_weight" in values else model.head()
    if "images" in values and Reads.IMAGES in reads:
        images = values["images"]

        def batches():
            for chunk in images.split(sub_batch):
                yield chunk if chunk.is_floating_point() else to_pixels(chunk, compute.device, compute.channels_last)

        out[Reads.IMAGES] = ImageBatches(model, batches, len(images), compute.autocast, on_images)
    return out


def batch_seed(key: str, index: int) -> int:
    """The torch seed of batch ``index`` of the round keyed ``key``."""
    return int(stable_hash([key, index])[:15], 16)


@dataclass(frozen=True)
class Scored:
    """A round's scores per kept part, what its check found, and its cost."""

    values: dict[str, np.ndarray]
    check: Check | None
    seconds: float
    rows: int


def score_parts(ctx, entry: MethodEntry, network: Network, state_blob: bytes | None, parts: Sequence[Part],
                sources: Sequence[RowSource], key: str, check: bool, desc: str) -> Scored:
    """Score the kept ``parts`` of a round keyed ``key`` with ``entry`` (fitted state ``state_blob``) in mixed
    batches, in this process or, under ``--sealed``, in a fresh sandboxed worker per batch group. The
    layout is drawn from the run's nonce and ``key`` (from ``key`` alone for a transductive method)."""
    state = decode_state(state_blob, ctx.compute.device) if state_blob is not None and ctx.sealed is None else None
    rows = Rows(parts)
    size = batch_size(ctx.batch_for(network) if Reads.IMAGES in entry.caps.reads else None)
    nonce = 0 if entry.cls.transductive else ctx.nonce
    rng = np.random.default_rng([nonce, int(key[:15], 16)])
    device = ctx.compute.device
    scored = [0]

    def values_of(batch: np.ndarray) -> dict[str, torch.Tensor]:
        scored[0] += len(batch)
        return batch_values(entry.caps, sources, *rows.local(batch), device, entry.layer_reads)

    def in_process(index: int, batch: np.ndarray) -> np.ndarray:
        data = ScoreInputs(entry.label, entry.caps.reads, declared(entry.caps.reads, values_of(batch), network.model,
                                                                    network.model.num_classes, ctx.compute,
                                                                    ctx.batch_for(network), ctx.forwarded),
                           network.model.num_classes)
        torch.manual_seed(batch_seed(key, index))
        return plugin_call(device, entry.cls(entry.params, state=state).score, data).detach().float().cpu().numpy()

    @contextmanager
    def session(group: str) -> Iterator[Callable[[int, np.ndarray], np.ndarray]]:
        if ctx.sealed is None:
            yield in_process
            return
        with ctx.sealed.worker(*sealed_job(ctx, entry, network, state_blob, "score")) as worker:
            yield lambda index, batch: worker.call({"seed": batch_seed(key, index)},
                                                   sealed_arrays(entry.caps, network, values_of(batch)))["scores"]

    started = time.perf_counter()
    with network.handed_to(f"method {entry.label}"):
        values, found = score_round(session, parts, size, rng, check,
                                    lambda batches, total: progress(batches, desc=desc, total=total, unit="batch"))
    return Scored(values, found, time.perf_counter() - started, scored[0])


def sealed_job(ctx, entry: MethodEntry, network: Network, state_blob: bytes | None, kind: str) -> tuple[dict, bytes]:
    """A sealed worker's job for ``entry`` (see :func:`oodbench.engine.sealed.method_job`)."""
    from oodbench.engine.sealed import method_job

    header, payload = method_job(entry, network, state_blob, ctx.compute.precision, ctx.batch_for(network))
    return {**header, "kind": kind}, payload


def sealed_arrays(caps: Capabilities, network: Network, values: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``values`` as host arrays for a sealed worker, with the head when the method reads it."""
    arrays = {name: value.detach().cpu().numpy() for name, value in values.items()}
    if Reads.HEAD in caps.reads:
        head = network.model.head()
        arrays.update(head_weight=head.weight.cpu().numpy(), head_bias=head.bias.cpu().numpy())
    return arrays
