"""What a method is handed: typed inputs built from the engine's objects, as far as it declared them.

:func:`score_inputs` is where "a method never sees labels, the split's name or its role" is made
true: it copies the declared representations of one split into a :class:`ScoreInputs` in an order
drawn from the score's content key (so neither the stored order, which is sorted by class in
ImageFolder archives, nor the position of the ID split among the calls tells anything) and keeps
no reference to the split. :func:`unpermute` puts the scores back in the stored order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from oodbench.api import Capabilities, FitInputs, ImageBatches, Reads, ScoreInputs, TrainingContext
from oodbench.data.arrays import SplitArrays
from oodbench.data.batches import pixel_batches, to_pixels
from oodbench.engine.context import Extraction, Network
from oodbench.models.training import optimizer_step
from oodbench.progress import progress


def sample_order(key: str, count: int) -> np.ndarray:
    """The order a split's samples are shown in: a permutation seeded by the score's content key."""
    return np.random.default_rng(int(key[:15], 16)).permutation(count)


def unpermute(scores: np.ndarray, order: np.ndarray) -> np.ndarray:
    restored = np.empty_like(scores)
    restored[order] = scores
    return restored


def _values(ctx, caps: Capabilities, network: Network, images: np.ndarray, extraction: Extraction | None,
            order: np.ndarray | None) -> dict[Reads, Any]:
    device = ctx.compute.device
    pick = (lambda a: np.array(a)) if order is None else (lambda a: np.asarray(a)[order])
    values: dict[Reads, Any] = {}
    if Reads.LOGITS in caps.reads or Reads.ALL_LOGITS in caps.reads:
        logits = torch.from_numpy(pick(extraction.logits)).to(device)
        if Reads.LOGITS in caps.reads:
            values[Reads.LOGITS] = logits[:, : network.model.num_classes]
        if Reads.ALL_LOGITS in caps.reads:
            values[Reads.ALL_LOGITS] = logits
    if Reads.FEATURES in caps.reads:
        values[Reads.FEATURES] = torch.from_numpy(pick(extraction.features)).to(device)
    if Reads.HEAD in caps.reads:
        values[Reads.HEAD] = network.model.head()
    if Reads.IMAGES in caps.reads:
        shown = images if order is None else images[order]
        batch, channels_last = ctx.batch_for(network), ctx.compute.channels_last
        values[Reads.IMAGES] = ImageBatches(network.model, lambda: pixel_batches(shown, batch, device, channels_last),
                                            len(shown), ctx.compute.autocast, ctx.forwarded)
    return values


def score_inputs(ctx, method: str, caps: Capabilities, network: Network, split: SplitArrays,
                 extraction: Extraction | None, order: np.ndarray) -> ScoreInputs:
    """One split's declared representations, in ``order``, and nothing else."""
    values = _values(ctx, caps, network, split.images, extraction, order)
    return ScoreInputs(method, caps.reads, values, network.model.num_classes)


@torch.no_grad()
def pixel_score_inputs(ctx, method: str, caps: Capabilities, network: Network, pixels: torch.Tensor) -> ScoreInputs:
    """The declared representations of float pixels on the device (attacked images), as for a split."""
    model, batch = network.model, ctx.batch_for(network)
    values: dict[Reads, Any] = {}
    if caps.extracted:
        outputs, features = [], []
        for chunk in pixels.split(batch):
            with ctx.compute.autocast():
                logits, feats = model.forward_with_features(chunk)
            outputs.append(logits.float())
            features.append(feats.float())
            ctx.forwarded(len(chunk))
        computed = {Reads.ALL_LOGITS: torch.cat(outputs), Reads.FEATURES: torch.cat(features)}
        computed[Reads.LOGITS] = computed[Reads.ALL_LOGITS][:, : model.num_classes]
        values.update({read: value for read, value in computed.items() if read in caps.reads})
    if Reads.HEAD in caps.reads:
        values[Reads.HEAD] = model.head()
    if Reads.IMAGES in caps.reads:
        values[Reads.IMAGES] = ImageBatches(model, lambda: iter(pixels.split(batch)), len(pixels), ctx.compute.autocast,
                                            ctx.forwarded)
    return ScoreInputs(method, caps.reads, values, model.num_classes)


def held_out(train: SplitArrays, holdout: SplitArrays | None) -> np.ndarray | None:
    """The rows of ``train`` a fit may use when ``holdout`` (``--tune``'s validation slice) is held out
    of it: those not in ``holdout`` (None: every row; also when ``holdout`` comes from another split)."""
    if holdout is None or (holdout.dataset, holdout.split) != (train.dataset, train.split):
        return None
    return train.rows_outside(holdout)


def fit_inputs(ctx, method: str, caps: Capabilities, network: Network, train: SplitArrays, extraction: Extraction | None,
               seed: int, scratch: Path, rows: np.ndarray | None = None) -> FitInputs:
    """The ID training split's declared representations with labels, seed, scratch and progress
    (``rows``: only these rows of it)."""
    values = _values(ctx, caps, network, train.images, extraction, rows)
    labels = torch.as_tensor(np.asarray(train.labels if rows is None else train.labels[rows])).to(ctx.compute.device)
    return FitInputs(method, caps.reads, values, network.model.num_classes, labels, seed, scratch, progress)


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
    )
