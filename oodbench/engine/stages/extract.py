"""``extract``: one forward pass per (network, split) gives logits and penultimate features for
every method that reads them; cached under the network's key, the split's key and the precision.

Methods that read logits or features never run the network themselves. The network's top-1
accuracy on a labelled split is derived from the same logits.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from oodbench.api import BackboneSpec
from oodbench.data.arrays import SplitArrays
from oodbench.data.batches import pixel_batches
from oodbench.engine.context import Extraction
from oodbench.engine.device import Compute
from oodbench.engine.estimate import Work
from oodbench.engine.plan import Resources, Task, array_mb
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash
from oodbench.metrics import accuracy
from oodbench.models.classifier import ImageClassifier
from oodbench.progress import progress

KIND = "extract"


@torch.no_grad()
def forward_pass(model: ImageClassifier, split: SplitArrays, compute: Compute, batch_size: int,
                 on_images: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features of every image of ``split`` (eval mode, the compute's precision).

    Outputs stay on the device until the whole split is done: one copy to the host per split, no
    synchronisation per batch.
    """
    model.eval()
    n = len(split)
    logits = torch.empty(n, model.num_outputs, device=compute.device)
    features = torch.empty(n, model.feature_dim, device=compute.device)
    batches = pixel_batches(split.images, batch_size, compute.device, compute.channels_last)
    start = 0
    for pixels in progress(batches, desc=f"extract {split.label}", total=-(-n // batch_size), unit="batch"):
        with compute.autocast():
            out, feats = model.forward_with_features(pixels)
        logits[start : start + len(pixels)] = out
        features[start : start + len(pixels)] = feats
        start += len(pixels)
        if on_images is not None:
            on_images(len(pixels))
    return logits.cpu().numpy(), features.cpu().numpy()


def _extract(ctx, network, split: SplitArrays, key: str, rate: str) -> Extraction:
    def compute(directory) -> dict:
        started = time.perf_counter()
        logits, features = forward_pass(network.model, split, ctx.compute, ctx.batch_for(network), ctx.forwarded)
        ctx.throughput.record(rate, len(split), time.perf_counter() - started)
        np.save(directory / "logits.npy", logits)
        np.save(directory / "features.npy", features)
        return {"split": split.label, "count": len(split), "checkpoint": network.key, "precision": ctx.compute.precision}

    def load(artifact) -> Extraction:
        logits = artifact.array("logits", mmap=True)
        labelled = len(split) > 0 and int(split.labels.min()) >= 0
        id_logits = logits[:, : network.model.num_classes]
        return Extraction(logits, artifact.array("features", mmap=True), accuracy(id_logits, split.labels) if labelled else None)

    return ctx.cache.cached(KIND, key, compute, load)


def plan_extract(ctx, network_task: Task, network_name: str, split: PlannedSplit, backbone: BackboneSpec, num_classes: int,
                 model_mb: float, group: str | None = None) -> Task:
    """The extraction of ``split`` by the network of ``network_task`` (planned once, shared)."""
    key = None if network_task.key is None or split.key is None else stable_hash(
        {"checkpoint": network_task.key, "split": split.key, "precision": ctx.compute.precision,
         "code": code_closure(__name__, backbone.build)})
    rate = ctx.throughput.key("forward", backbone.name)
    feature_dim = backbone.feature_dim
    memory = model_mb + array_mb(split.count, feature_dim + num_classes)
    return Task(f"extract:{network_task.id}:{split.ident}", KIND, f"{split.label} through {network_name}", key,
                lambda ctx, inputs: _extract(ctx, inputs["network"], inputs["split"], key, rate),
                inputs={"network": network_task.id, "split": split.task}, work=Work(rate, split.count),
                resources=Resources(ctx.compute.device.type, memory), group=group)
