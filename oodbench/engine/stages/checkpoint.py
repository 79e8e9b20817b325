"""``checkpoint``: the classifier of one seed, from a file, pytorch-ood's registry, or training.

Which one is decided from the run's settings and the backbone's declared checkpoints, never from
names: ``--checkpoint`` wins, then published weights for exactly this ID dataset and seed (a
re-encoded copy has other pixels, so it gets none), then training with the backbone's recipe.
"""

from __future__ import annotations

import dataclasses

from oodbench.api import BackboneSpec, DatasetSpec
from oodbench.config import RunConfig
from oodbench.engine.context import Network
from oodbench.engine.estimate import Work
from oodbench.engine.plan import TRAINING_COPIES, Resources, Task
from oodbench.engine.stages.materialise import PlannedSplit
from oodbench.errors import ConfigError
from oodbench.models import checkpoints as ckpt

KIND = ckpt.STAGE


def _network(ctx, backbone: BackboneSpec, model, key: str, origin: str, known=None, info: dict | None = None) -> Network:
    return Network(key, origin, ctx.compute.prepare(model).eval(), known, info or {}, backbone.name)


def _no_checkpoint(backbone: BackboneSpec, id_spec: DatasetSpec, seed: int) -> ConfigError:
    known = sorted({f"{c.dataset} (seed {c.seed})" for c in backbone.checkpoints}) or ["none"]
    return ConfigError(
        f"no checkpoint of backbone '{backbone.name}' for '{id_spec.name}' with seed {seed}; "
        f"published weights exist for: {', '.join(known)}",
        "pass --checkpoint FILE (or pytorch-ood:KEY), or --train to train one with the backbone's recipe",
    )


def task_id(backbone: BackboneSpec, id_spec: DatasetSpec, seed: int) -> str:
    """The checkpoint task's id: one network per backbone, ID dataset and seed of a grid."""
    return f"checkpoint:{backbone.name}/{id_spec.name}:seed{seed}"


def _registry_task(backbone: BackboneSpec, id_spec: DatasetSpec, seed: int, registry_key: str, known,
                   resources: Resources) -> Task:
    entry = ckpt.registry_entry(registry_key)
    origin = f"{ckpt.REGISTRY_PREFIX}{registry_key}"
    key = entry.sha256[:24]

    def run(ctx, inputs):
        return _network(ctx, backbone, ckpt.load_registry(backbone, registry_key, id_spec.num_classes), key, origin, known)

    needs = None if ckpt.registry_file(registry_key).is_file() else f"download {entry.url}"
    return Task(task_id(backbone, id_spec, seed), KIND, f"{origin} (seed {seed})", key, run, needs=needs, resources=resources)


def plan_checkpoint(ctx, config: RunConfig, backbone: BackboneSpec, id_spec: DatasetSpec, seed: int,
                    train: PlannedSplit | None, model_mb: float) -> Task:
    """The task that yields the :class:`Network` of ``seed`` (``model_mb``: MiB of its weights)."""
    loaded = Resources(ctx.compute.device.type, model_mb)
    if config.checkpoint and config.checkpoint.startswith(ckpt.REGISTRY_PREFIX):
        return _registry_task(backbone, id_spec, seed, config.checkpoint[len(ckpt.REGISTRY_PREFIX):], None, loaded)
    if config.checkpoint:
        path = ckpt.weights_file(config.checkpoint)
        key, origin = ckpt.file_hash(path, ctx.sources.digests), f"file:{path.resolve()}"
        return Task(task_id(backbone, id_spec, seed), KIND, f"{origin} (seed {seed})", key,
                    lambda ctx, inputs: _network(ctx, backbone, ckpt.load_file(backbone, path, id_spec.num_classes), key, origin),
                    resources=loaded)
    known = backbone.known_checkpoint(id_spec.name, seed) if config.pretrained else None
    if known is not None:
        return _registry_task(backbone, id_spec, seed, known.registry_key, known, loaded)
    if not config.train:
        raise _no_checkpoint(backbone, id_spec, seed)
    recipe = backbone.recipe if config.epochs is None else dataclasses.replace(backbone.recipe, epochs=config.epochs)
    key = None if train.key is None else ckpt.trained_key(backbone, id_spec.num_classes, train.key, recipe, seed, ctx.compute)
    origin = f"trained:{backbone.name}/{id_spec.name}/seed{seed}"

    rate = ctx.throughput.key("train", backbone.name)

    def run(ctx, inputs):
        model, info = ckpt.train_or_load(backbone, id_spec.name, id_spec.num_classes, inputs["train"], recipe, seed,
                                         ctx.compute, ctx.cache, key, ctx.forwarded,
                                         on_trained=lambda images, seconds: ctx.throughput.record(rate, images, seconds))
        return _network(ctx, backbone, model, key, origin, None, info)

    items = None if train.count is None else recipe.epochs * train.count
    return Task(task_id(backbone, id_spec, seed), KIND, f"train {backbone.name} on {train.label}, {recipe.epochs} epochs (seed {seed})",
                key, run, inputs={"train": train.task}, work=Work(rate, items),
                resources=Resources(ctx.compute.device.type, TRAINING_COPIES * model_mb), collective=True)
