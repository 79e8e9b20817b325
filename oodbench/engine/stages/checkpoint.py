"""``checkpoint``: the classifier of one seed, from a file, pytorch-ood's registry, torchvision's
weights API, or training.

Which one is decided from the run's settings and the backbone's declared checkpoints, never from
names: ``--checkpoint`` wins, then published weights for exactly this ID dataset and seed (a
re-encoded copy has other pixels, so it gets none) or for the label space it declares, when the
preset asks for published weights or the backbone is not trainable, then training with the
backbone's recipe.
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


def _torchvision_task(backbone: BackboneSpec, id_spec: DatasetSpec, seed: int, name: str, known, resources: Resources) -> Task:
    weights = ckpt.torchvision_weights(name)
    origin = f"{ckpt.TORCHVISION_PREFIX}{name}"
    key = f"torchvision-{ckpt.Path(weights.url).name}"  # the file name carries the sha256 prefix torchvision checks

    def run(ctx, inputs):
        return _network(ctx, backbone, ckpt.load_torchvision(backbone, name, id_spec.num_classes, id_spec.stands_for), key,
                        origin, known)

    needs = None if ckpt.torchvision_file(name).is_file() else f"download {weights.url}"
    return Task(task_id(backbone, id_spec, seed), KIND, f"{origin} (seed {seed})", key, run, needs=needs, resources=resources)


def _known_task(backbone: BackboneSpec, id_spec: DatasetSpec, seed: int, known, resources: Resources) -> Task:
    if known.torchvision_weights:
        return _torchvision_task(backbone, id_spec, seed, known.torchvision_weights, known, resources)
    return _registry_task(backbone, id_spec, seed, known.registry_key, known, resources)


def published_weights(config: RunConfig, backbone: BackboneSpec, id_spec: DatasetSpec, seed: int):
    """The backbone's published weights this run uses for (ID set, seed), or None: when it has weights for the ID
    set or its label space, and the preset asks for published weights or the backbone is never trained."""
    known = backbone.known_checkpoint(id_spec.name, seed, id_spec.label_space)
    return known if known is not None and (config.pretrained or not backbone.trainable) else None


def plan_checkpoint(ctx, config: RunConfig, backbone: BackboneSpec, id_spec: DatasetSpec, seed: int,
                    train: PlannedSplit | None, model_mb: float) -> Task:
    """The task that yields the :class:`Network` of ``seed`` (``model_mb``: MiB of its weights)."""
    loaded = Resources(ctx.compute.device.type, model_mb)
    if config.checkpoint and config.checkpoint.startswith(ckpt.REGISTRY_PREFIX):
        return _registry_task(backbone, id_spec, seed, config.checkpoint[len(ckpt.REGISTRY_PREFIX):], None, loaded)
    if config.checkpoint and config.checkpoint.startswith(ckpt.TORCHVISION_PREFIX):
        return _torchvision_task(backbone, id_spec, seed, config.checkpoint[len(ckpt.TORCHVISION_PREFIX):], None, loaded)
    if config.checkpoint:
        path = ckpt.weights_file(config.checkpoint)
        key, origin = ckpt.file_hash(path, ctx.sources.digests), f"file:{path.resolve()}"
        return Task(task_id(backbone, id_spec, seed), KIND, f"{origin} (seed {seed})", key,
                    lambda ctx, inputs: _network(ctx, backbone, ckpt.load_file(backbone, path, id_spec.num_classes, id_spec.stands_for),
                                                 key, origin),
                    resources=loaded)
    known = published_weights(config, backbone, id_spec, seed)
    if known is not None:
        return _known_task(backbone, id_spec, seed, known, loaded)
    if not backbone.trainable:
        raise ConfigError(f"backbone '{backbone.name}' is only used with published weights, and it has none for "
                          f"'{id_spec.name}' (seed {seed})", "pass --checkpoint FILE, or an ID set of its label space "
                          f"({', '.join(sorted({c.dataset for c in backbone.checkpoints}))})")
    if not config.train:
        raise _no_checkpoint(backbone, id_spec, seed)
    recipe = backbone.recipe if config.epochs is None else dataclasses.replace(backbone.recipe, epochs=config.epochs)
    key = None if train.key is None else ckpt.trained_key(backbone, id_spec.num_classes, train.key, recipe, seed, ctx.compute)
    origin = f"trained:{backbone.name}/{id_spec.name}/seed{seed}"

    rate = ctx.throughput.key("train", backbone.name)

    def run(ctx, inputs):
        model, info = ckpt.train_or_load(backbone, id_spec.name, id_spec.num_classes, inputs["train"], recipe, seed,
                                         ctx.compute, ctx.cache, key, ctx.forwarded,
                                         on_trained=lambda images, seconds: ctx.throughput.record(rate, images, seconds),
                                         stands_for=id_spec.stands_for)
        return _network(ctx, backbone, model, key, origin, None, info)

    items = None if train.count is None else recipe.epochs * train.count
    return Task(task_id(backbone, id_spec, seed), KIND, f"train {backbone.name} on {train.label}, {recipe.epochs} epochs (seed {seed})",
                key, run, inputs={"train": train.task}, work=Work(rate, items),
                resources=Resources(ctx.compute.device.type, TRAINING_COPIES * model_mb), collective=True)
