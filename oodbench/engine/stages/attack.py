"""``attack``: one split's outlier scores after an L-inf PGD attack on the method.

The attack steps along the gradient of the method's declared differentiable score
(``Method.attack_score``: its own score or a declared surrogate), in the engine's precision,
batch by batch; the attacked images are then scored by a fresh instance of the method with its
real ``score()``, through the same inputs a clean split gets (declared representations only, in
a drawn order). Whether the inputs are pushed toward ID or toward OOD is the engine's decision,
from the split's role; the method never learns it. Cached like clean scores, with the attack's
cost: forward + backward passes and seconds.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from oodbench.api import BackboneSpec
from oodbench.attacks import AttackSpec, pgd
from oodbench.data.batches import pixel_batches
from oodbench.engine.context import ScoredSplit
from oodbench.engine.entries import MethodEntry
from oodbench.engine.estimate import Work
from oodbench.engine.inputs import pixel_score_inputs, sample_order, unpermute
from oodbench.engine.plan import Resources, Task, array_mb
from oodbench.engine.stages.fit import decode_state
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash

KIND = "attack"


def _attack(ctx, entry: MethodEntry, network, split, fitted, tuned, spec: AttackSpec, toward_ood: bool, seed: int, key: str,
            rate: str) -> ScoredSplit:
    device, entry = ctx.compute.device, entry.tuned_by(tuned)

    def state():
        return decode_state(fitted.blob, device) if fitted is not None else None

    def compute(directory) -> dict:
        order = sample_order(key, len(split))
        attacker = entry.cls(entry.params, state=state())
        model = network.model.eval()
        generator = torch.Generator().manual_seed(seed)
        started = time.perf_counter()
        batches = pixel_batches(np.asarray(split.images)[order], ctx.batch_for(network), device, ctx.compute.channels_last)
        attacked = torch.cat([pgd(lambda x: attacker.attack_score(model, x), batch, spec, toward_ood, generator,
                                  ctx.compute.autocast) for batch in batches])
        passes = spec.steps * len(split)
        ctx.forwarded(passes)
        torch.manual_seed(seed)
        inputs = pixel_score_inputs(ctx, entry.label, entry.caps, network, attacked)
        values = entry.cls(entry.params, state=state()).score(inputs).detach().float().cpu().numpy().reshape(-1)
        seconds = time.perf_counter() - started
        if values.shape[0] != len(split):
            raise RuntimeError(f"score() returned {values.shape[0]} scores for {len(split)} attacked samples")
        ctx.throughput.record(rate, passes, seconds)
        np.save(directory / "scores.npy", unpermute(values, order).astype(np.float32))
        return {"method": entry.label, "split": split.label, "attack": spec.describe(), "seconds": seconds, "passes": passes}

    def load(artifact) -> ScoredSplit:
        return ScoredSplit(artifact.array("scores"), artifact.meta["seconds"], key, artifact.meta["passes"])

    return ctx.cache.cached(KIND, key, compute, load)


def plan_attack(ctx, entry: MethodEntry, network: Task, split: PlannedSplit, fit: Task | None, spec: AttackSpec,
                toward_ood: bool, seed: int, backbone: BackboneSpec, model_mb: float, image_values: int,
                tune: Task | None = None) -> Task:
    """The attacked scores of ``split``: pushed toward OOD (an ID split) or toward ID (an OOD split), with
    the parameters ``tune`` chose when given."""
    keys = (network.key, split.key, *([fit.key] if fit else []), *([tune.key] if tune else []))
    base = None if None in keys else {
        **entry.identity(), "checkpoint": network.key, "fit": fit.key if fit else None, "split": split.key,
        "precision": ctx.compute.precision, "seed": seed, **({"tuned": tune.key} if tune else {})}
    key = None if base is None else stable_hash({**base, "attack": spec, "toward_ood": toward_ood,
                                                 "stage": code_closure(__name__, backbone.build)})
    rate = ctx.throughput.key("attack", f"{entry.cls.name}/{backbone.name}")
    items = None if split.count is None else split.count * spec.steps
    inputs = {"network": network.id, "split": split.task, **({"fit": fit.id} if fit else {}), **({"tune": tune.id} if tune else {})}
    pixels_mb = array_mb(split.count, image_values)  # the attacked split's float pixels, on the device
    return Task(f"attack:{spec.name}:{stable_hash(spec, 8)}:{entry.label}:{network.id}:{split.ident}", KIND,
                f"{entry.label} under {spec.name} attack on {split.label} (toward {'OOD' if toward_ood else 'ID'})", key,
                lambda ctx, inputs: _attack(ctx, entry, inputs["network"], inputs["split"], inputs.get("fit"), inputs.get("tune"),
                                            spec, toward_ood, seed, key, rate),
                inputs=inputs, work=Work(rate, items, ctx.throughput.key("train", backbone.name)),
                resources=Resources(ctx.compute.device.type, model_mb + pixels_mb), group=entry.label)
