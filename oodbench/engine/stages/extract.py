"""``extract``: one forward pass per (network, split) gives logits and penultimate features for
every method that reads them, and the intermediate layers any method of the run reads; cached under
the network's key, the split's key and the precision, each layer (with its reduction) as an artifact of
its own beside the logits and features, so a method that reads a new layer adds only that layer's
artifact (one more pass over the split), and a layer another run extracted is loaded.

Methods that read logits, features or layers never run the network themselves. The network's top-1
accuracy on a labelled split is derived from the same logits. Layer outputs are written batch by batch
into memory-mapped files, so a split's feature maps never need to fit in memory.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

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
from oodbench.models.layers import LayerRead, captured, layer_key
from oodbench.progress import progress

KIND = "extract"
#: the artifact of the logits and features (the layers' are named by :func:`layer_key`)
OUTPUTS = "outputs"


@torch.no_grad()
def forward_pass(model: ImageClassifier, split: SplitArrays, compute: Compute, batch_size: int,
                 on_images: Callable[[int], None] | None = None, layers: Sequence[LayerRead] = (),
                 allocate: Callable[[str, tuple[int, ...]], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features of every image of ``split`` (eval mode, the compute's precision); each of ``layers``
    is written batch by batch into the array ``allocate(layer_key, shape)`` returns (a memory-mapped file).

    Logits and features stay on the device until the whole split is done: one copy to the host per split,
    no synchronisation per batch (layer outputs are copied per batch).
    """
    model.eval()
    n = len(split)
    logits = torch.empty(n, model.num_outputs, device=compute.device)
    features = torch.empty(n, model.feature_dim, device=compute.device)
    batches = pixel_batches(split.images, batch_size, compute.device, compute.channels_last)
    sinks: dict[str, np.ndarray] = {}
    start = 0
    with captured(model.net, model.layer_paths, layers) as outputs:
        for pixels in progress(batches, desc=f"extract {split.label}", total=-(-n // batch_size), unit="batch"):
            with compute.autocast():
                out, feats = model.forward_with_features(pixels)
            logits[start : start + len(pixels)] = out
            features[start : start + len(pixels)] = feats
            for key, value in outputs.items():
                if key not in sinks:
                    sinks[key] = allocate(key, (n, *value.shape[1:]))
                sinks[key][start : start + len(pixels)] = value.cpu().numpy()
            start += len(pixels)
            if on_images is not None:
                on_images(len(pixels))
    return logits.cpu().numpy(), features.cpu().numpy()


def _extract(ctx, network, split: SplitArrays, keys: Mapping[str, str], layers: Sequence[LayerRead], rate: str) -> Extraction:
    group = stable_hash(sorted(keys.values()))
    labelled = len(split) > 0 and int(split.labels.min()) >= 0

    def compute(missing: list[str], present: dict) -> dict:
        reads = [read for read in layers if layer_key(read) in missing]
        files: dict[str, Path] = {}

        def allocate(key: str, shape: tuple[int, ...]) -> np.ndarray:
            files[key] = ctx.cache.scratch(KIND, group) / f"{key.replace(':', '-')}.npy"
            return np.lib.format.open_memmap(files[key], "w+", np.float32, shape)

        started = time.perf_counter()
        logits, features = forward_pass(network.model, split, ctx.compute, ctx.batch_for(network), ctx.forwarded, reads, allocate)
        ctx.throughput.record(rate, len(split), time.perf_counter() - started)
        about = {"split": split.label, "count": len(split), "checkpoint": network.key, "precision": ctx.compute.precision}

        def outputs(directory) -> dict:
            np.save(directory / "logits.npy", logits)
            np.save(directory / "features.npy", features)
            return about

        def layer(key: str):
            def write(directory) -> dict:
                shutil.move(files[key], directory / "values.npy")
                return {**about, "layer": key}
            return write

        return {name: outputs if name == OUTPUTS else layer(name) for name in missing}

    def load(name: str, artifact):
        if name != OUTPUTS:
            return artifact.array("values", mmap=True)
        logits = artifact.array("logits", mmap=True)
        id_logits = logits[:, : network.model.num_classes]
        return logits, artifact.array("features", mmap=True), accuracy(id_logits, split.labels) if labelled else None

    try:
        loaded = ctx.cache.cached_group(KIND, keys, compute, load)
    finally:
        ctx.cache.drop_scratch(KIND, group)
    return Extraction(*loaded[OUTPUTS], layers={name: values for name, values in loaded.items() if name != OUTPUTS})


def plan_extract(ctx, network_task: Task, network_name: str, split: PlannedSplit, backbone: BackboneSpec, num_classes: int,
                 model_mb: float, group: str | None = None, layers: Sequence[LayerRead] = ()) -> Task:
    """The extraction of ``split`` by the network of ``network_task`` (planned once, shared), with the
    intermediate ``layers`` the run's methods read."""
    key = None if network_task.key is None or split.key is None else stable_hash(
        {"checkpoint": network_task.key, "split": split.key, "precision": ctx.compute.precision,
         "code": code_closure(__name__, backbone.build)})
    keys = None if key is None else {OUTPUTS: key, **{
        layer_key(read): stable_hash({"outputs": key, "layer": layer_key(read), "module": backbone.layers[read[0]]})
        for read in layers}}
    task_key = key if not layers or keys is None else stable_hash(sorted(keys.values()))
    rate = ctx.throughput.key("forward", backbone.name)
    feature_dim = backbone.feature_dim
    memory = model_mb + array_mb(split.count, feature_dim + num_classes)
    return Task(f"extract:{network_task.id}:{split.ident}", KIND, f"{split.label} through {network_name}", task_key,
                lambda ctx, inputs: _extract(ctx, inputs["network"], inputs["split"], keys, layers, rate),
                inputs={"network": network_task.id, "split": split.task}, work=Work(rate, split.count),
                resources=Resources(ctx.compute.device.type, memory), group=group, artifacts=keys if layers else None)
