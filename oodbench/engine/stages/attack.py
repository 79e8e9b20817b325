"""``attack``: one split's outlier scores after an L-inf PGD attack on the method.

The attack steps along the gradient of the method's declared differentiable score
(``Method.attack_score``: its own score or a declared surrogate), in the engine's precision,
batch by batch; the attacked images are then scored by the method's real ``score()`` as clean
splits are: in mixed, fixed-size batches (completed with clean rows of the round's other splits),
through declared representations only (:func:`oodbench.engine.scoring.score_parts`). Whether the inputs are pushed toward ID or toward OOD is the engine's decision,
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
from oodbench.engine.calls import plugin_call
from oodbench.engine.context import ScoredSplit
from oodbench.engine.entries import MethodEntry
from oodbench.engine.estimate import Work
from oodbench.engine.mixing import Part
from oodbench.engine.plan import Resources, Task, array_mb
from oodbench.engine.scoring import forwarded_rows, score_parts, split_rows
from oodbench.engine.stages.fit import decode_state
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.hashing import code_closure, stable_hash

KIND = "attack"


def _attack(ctx, entry: MethodEntry, network, split, others: dict, extractions: dict, roles: dict[str, str], fitted, tuned,
            spec: AttackSpec, toward_ood: bool, seed: int, key: str, rate: str) -> ScoredSplit:
    device, entry = ctx.compute.device, entry.tuned_by(tuned)

    def state():
        return decode_state(fitted.blob, device) if fitted is not None else None

    def compute(directory) -> dict:
        attacker = entry.cls(entry.params, state=state())
        generator = torch.Generator().manual_seed(seed)
        started = time.perf_counter()
        order = np.random.default_rng(int(key[:15], 16)).permutation(len(split))  # the attack's batches mix the split's classes
        with network.handed_to(f"method {entry.label} (attacked)") as model:
            batches = pixel_batches(np.asarray(split.images)[order], ctx.batch_for(network), device, ctx.compute.channels_last)
            def differentiable(pixels):
                return plugin_call(device, attacker.attack_score, model, pixels, within=ctx.compute.autocast)

            attacked = torch.cat([pgd(differentiable, batch, spec, toward_ood, generator, ctx.compute.autocast) for batch in batches])
        attacked = attacked[torch.from_numpy(np.argsort(order)).to(attacked.device)]  # back in the stored order
        passes = spec.steps * len(split)
        ctx.forwarded(passes)
        role = "id" if toward_ood else "ood"
        parts = [Part(split.label, len(split), role, True)] + [Part(label, len(other), roles[label], False)
                                                               for label, other in others.items()]
        sources = [forwarded_rows(ctx, network, attacked, entry.caps, entry.layer_reads)] + [split_rows(other, extractions.get(label))
                                                                         for label, other in others.items()]
        scored = score_parts(ctx, entry, network, fitted.blob if fitted is not None else None, parts, sources, key, False,
                             f"score {entry.label} (attacked)")
        seconds = time.perf_counter() - started
        ctx.throughput.record(rate, passes, seconds)
        np.save(directory / "scores.npy", scored.values[split.label])
        return {"method": entry.label, "split": split.label, "attack": spec.describe(), "seconds": seconds, "passes": passes}

    def load(artifact) -> ScoredSplit:
        return ScoredSplit(artifact.array("scores"), artifact.meta["seconds"], key, artifact.meta["passes"])

    return ctx.cache.cached(KIND, key, compute, load)


def plan_attack(ctx, entry: MethodEntry, network: Task, split: PlannedSplit, others: list[tuple[PlannedSplit, str]],
                extractions: dict, fit: Task | None, spec: AttackSpec, toward_ood: bool, seed: int, backbone: BackboneSpec,
                model_mb: float, image_values: int, tune: Task | None = None) -> Task:
    """The attacked scores of ``split``: pushed toward OOD (an ID split) or toward ID (an OOD split), with
    the parameters ``tune`` chose when given. The attacked images are scored in mixed batches completed
    with clean rows of the ``others`` splits of the round (each with its role; ``extractions``: their
    extraction tasks, when the method reads extracted representations)."""
    keys = (network.key, split.key, *([fit.key] if fit else []), *([tune.key] if tune else []))
    base = None if None in keys else {
        **entry.identity(), "checkpoint": network.key, "fit": fit.key if fit else None, "split": split.key,
        "precision": ctx.compute.precision, "seed": seed, **({"tuned": tune.key} if tune else {})}
    key = None if base is None else stable_hash({**base, "attack": spec, "toward_ood": toward_ood,
                                                 "stage": code_closure(__name__, backbone.build)})
    rate = ctx.throughput.key("attack", f"{entry.cls.name}/{backbone.name}")
    items = None if split.count is None else split.count * spec.steps
    inputs = {"network": network.id, "split": split.task, **({"fit": fit.id} if fit else {}), **({"tune": tune.id} if tune else {})}
    labels = [other.label for other, _ in others]
    for i, (other, _) in enumerate(others):
        inputs[f"other{i}"] = other.task
        if extractions.get(other.label) is not None:
            inputs[f"extraction{i}"] = extractions[other.label].id
    roles = {other.label: role for other, role in others}

    def run(ctx, values):
        named = {label: values[f"other{i}"] for i, label in enumerate(labels)}
        extracted = {label: values.get(f"extraction{i}") for i, label in enumerate(labels)}
        return _attack(ctx, entry, values["network"], values["split"], named, extracted, roles, values.get("fit"),
                       values.get("tune"), spec, toward_ood, seed, key, rate)

    pixels_mb = array_mb(split.count, image_values)  # the attacked split's float pixels, on the device
    return Task(f"attack:{spec.name}:{stable_hash(spec, 8)}:{entry.label}:{network.id}:{split.ident}", KIND,
                f"{entry.label} under {spec.name} attack on {split.label} (toward {'OOD' if toward_ood else 'ID'})", key, run,
                inputs=inputs, work=Work(rate, items, ctx.throughput.key("train", backbone.name)),
                resources=Resources(ctx.compute.device.type, model_mb + pixels_mb), group=entry.label)
