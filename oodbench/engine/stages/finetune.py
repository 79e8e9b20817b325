"""``finetune``: the network a training-time method makes from the base classifier.

Cached under the method's identity (class, parameters, code), the base checkpoint, the ID
training split, the auxiliary split (when the method trains with one), the seed and the
precision. The fine-tuned network is evaluated like any other: its own extractions, its own ID
accuracy (over the ID classes, when the method added outputs after them, as ATOM does).
"""

from __future__ import annotations

import copy
import time

import torch

from oodbench.api import BackboneSpec
from oodbench.engine.calls import plugin_call
from oodbench.engine.context import Network
from oodbench.engine.entries import MethodEntry
from oodbench.engine.estimate import Work
from oodbench.engine.inputs import training_context
from oodbench.engine.plan import TRAINING_COPIES, Resources, Task
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash
from oodbench.models import distributed

KIND = "finetune"


def _finetune(ctx, entry: MethodEntry, base: Network, train, aux, seed: int, key: str, rate: str) -> Network:
    model = copy.deepcopy(base.model).requires_grad_(True)  # the base network's weights are frozen

    def compute(directory) -> dict:
        context = training_context(ctx, model, train, aux, seed, ctx.cache.scratch(KIND, key), f"{entry.label} (seed {seed})")
        torch.manual_seed(seed)
        started = time.perf_counter()
        info = plugin_call(ctx.compute.device, entry.cls(entry.params).train, context) or {}
        seconds = time.perf_counter() - started
        ctx.throughput.record(rate, entry.cls(entry.params).training_images(len(train), len(aux) if aux else 0), seconds)
        torch.save(model.state_dict(), directory / "model.pt")
        return {**info, "train_seconds": seconds, "method": entry.label, "base": base.origin, "outputs": model.num_outputs}

    def load(artifact) -> Network:
        extra = artifact.meta.get("outputs", model.num_outputs) - model.num_outputs
        if extra > 0:  # rebuilt with its own architecture, e.g. an added outlier class
            model.add_outputs(extra)
        model.load_state_dict(torch.load(artifact.file("model.pt"), map_location=ctx.compute.device, weights_only=True))
        return Network(key, f"{entry.label} fine-tune of {base.origin}", model.eval(), None, dict(artifact.meta), base.backbone)

    return distributed.cached(ctx.cache, KIND, key, compute, load)


def plan_finetune(ctx, entry: MethodEntry, base: Task, network_name: str, train: PlannedSplit, aux: PlannedSplit | None,
                  seed: int, backbone: BackboneSpec, model_mb: float) -> Task:
    """The task that yields ``entry``'s fine-tuned :class:`Network` for ``seed`` (``model_mb``: MiB of its weights)."""
    parts = [base.key, train.key] + ([aux.key] if aux else [])
    key = None if any(p is None for p in parts) else stable_hash(
        {**entry.identity(), "base": base.key, "train": train.key, "aux": aux.key if aux else None, "seed": seed,
         "precision": ctx.compute.precision, "code": code_closure(__name__, backbone.build)})
    items = None if train.count is None or (aux and aux.count is None) else \
        entry.cls(entry.params).training_images(train.count, aux.count if aux else 0)
    rate = ctx.throughput.key("train", backbone.name)
    inputs = {"base": base.id, "train": train.task, **({"aux": aux.task} if aux else {})}
    return Task(f"finetune:{entry.label}:{base.id}", KIND,
                f"{entry.label} fine-tunes {network_name} on {train.label}" + (f" + {aux.label}" if aux else ""), key,
                lambda ctx, inputs: _finetune(ctx, entry, inputs["base"], inputs["train"], inputs.get("aux"), seed, key, rate),
                inputs=inputs, work=Work(rate, items),
                resources=Resources(ctx.compute.device.type, (1 + TRAINING_COPIES) * model_mb), group=entry.label,
                collective=entry.cls.distributed)
