"""What a method is handed to fit and to train: typed inputs built from the engine's objects, as far as
it declared them. (What it scores comes in mixed batches: :mod:`oodbench.engine.scoring`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from oodbench.api import Capabilities, FitInputs, ImageBatches, Reads, TrainingContext
from oodbench.data.arrays import SplitArrays
from oodbench.data.batches import pixel_batches, to_pixels
from oodbench.engine.context import Extraction, Network
from oodbench.engine.device import CompiledModule
from oodbench.models.layers import LAYER_PREFIX, LayerRead, layer_key
from oodbench.models.training import COMPILE_MIN_STEPS, optimizer_step
from oodbench.progress import progress


def _values(ctx, caps: Capabilities, network: Network, images: np.ndarray, extraction: Extraction | None,
            rows: np.ndarray | None, layers: Sequence[LayerRead]) -> dict[Reads, Any]:
    device = ctx.compute.device
    pick = (lambda a: np.array(a)) if rows is None else (lambda a: np.asarray(a)[rows])
    values: dict[Reads, Any] = {}
    if Reads.LOGITS in caps.reads or Reads.ALL_LOGITS in caps.reads:
        logits = torch.from_numpy(pick(extraction.logits)).to(device)
        if Reads.LOGITS in caps.reads:
            values[Reads.LOGITS] = logits[:, : network.model.num_classes]
        if Reads.ALL_LOGITS in caps.reads:
            values[Reads.ALL_LOGITS] = logits
    if Reads.FEATURES in caps.reads:
        values[Reads.FEATURES] = torch.from_numpy(pick(extraction.features)).to(device)
    if Reads.LAYERS in caps.reads:
        values[Reads.LAYERS] = {read[0]: torch.from_numpy(pick(extraction.layers[layer_key(read)])).to(device) for read in layers}
    if Reads.HEAD in caps.reads:
        values[Reads.HEAD] = network.model.head()
    if Reads.IMAGES in caps.reads:
        shown = images if rows is None else images[rows]
        batch, channels_last = ctx.batch_for(network), ctx.compute.channels_last
        values[Reads.IMAGES] = ImageBatches(network.model, lambda: pixel_batches(shown, batch, device, channels_last),
                                            len(shown), ctx.compute.autocast, ctx.forwarded)
    return values


def held_out(train: SplitArrays, holdout: SplitArrays | None) -> np.ndarray | None:
    """The rows of ``train`` a fit may use when ``holdout`` (``--tune``'s validation slice) is held out
    of it: those not in ``holdout`` (None: every row; also when ``holdout`` comes from another split)."""
    if holdout is None or (holdout.dataset, holdout.split) != (train.dataset, train.split):
        return None
    return train.rows_outside(holdout)


def fit_arrays(caps: Capabilities, network: Network, train: SplitArrays, extraction: Extraction | None,
               rows: np.ndarray | None, layers: Sequence[LayerRead] = ()) -> dict[str, np.ndarray]:
    """What a sealed worker needs to build :func:`fit_inputs` (the declared representations of ``train``,
    only ``rows`` of it when given, and its labels) as host arrays."""
    pick = (lambda a: np.asarray(a)) if rows is None else (lambda a: np.asarray(a)[rows])
    arrays = {"labels": pick(train.labels).astype(np.int64)}
    if Reads.LOGITS in caps.reads or Reads.ALL_LOGITS in caps.reads:
        arrays["logits"] = pick(extraction.logits)
    if Reads.FEATURES in caps.reads:
        arrays["features"] = pick(extraction.features)
    for read in layers:
        arrays[LAYER_PREFIX + read[0]] = pick(extraction.layers[layer_key(read)])
    if Reads.HEAD in caps.reads:
        head = network.model.head()
        arrays.update(head_weight=head.weight.cpu().numpy(), head_bias=head.bias.cpu().numpy())
    if Reads.IMAGES in caps.reads:
        arrays["images"] = pick(train.images)
    return arrays


def fit_inputs(ctx, method: str, caps: Capabilities, network: Network, train: SplitArrays, extraction: Extraction | None,
               seed: int, scratch: Path, rows: np.ndarray | None = None, layers: Sequence[LayerRead] = ()) -> FitInputs:
    """The ID training split's declared representations (``layers``: the intermediate layers it reads) with
    labels, seed, scratch and progress (``rows``: only these rows of it)."""
    values = _values(ctx, caps, network, train.images, extraction, rows, layers)
    labels = torch.as_tensor(np.asarray(train.labels if rows is None else train.labels[rows])).to(ctx.compute.device)
    return FitInputs(method, caps.reads, values, network.model.num_classes, labels, seed, scratch, progress)


def finetune_forward(module: torch.nn.Module, compiled: bool, backend: str = "inductor") -> CompiledModule:
    """The forward passes of a fine-tune: compiled (``compiled``) for its full batches, the short last batch of an
    epoch eager (no second compilation)."""
    return CompiledModule(module, compiled, one_batch_size=True, backend=backend)


def training_context(ctx, model, train: SplitArrays, aux: SplitArrays | None, seed: int, scratch: Path,
                     desc: str) -> TrainingContext:
    """The data and helpers :meth:`Method.train` fine-tunes ``model`` with."""
    device, channels_last = ctx.compute.device, ctx.compute.channels_last
    scaler = ctx.compute.grad_scaler()
    return TrainingContext(
        model=model, id_images=train.images, id_labels=np.asarray(train.labels),
        aux_images=aux.images if aux is not None else None, num_classes=model.num_classes, seed=seed, device=device,
        precision=ctx.compute.autocast, scratch=scratch, desc=desc,
        to_pixels=lambda images: to_pixels(images, device, channels_last), progress_display=progress,
        backward_step=lambda loss, optimizer: optimizer_step(loss, optimizer, scaler), on_images=ctx.forwarded,
        forward_for=lambda module, steps: finetune_forward(module, ctx.compute.compile and steps >= COMPILE_MIN_STEPS),
    )
