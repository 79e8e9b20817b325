"""``checkpoint``: the classifier of one seed, from a file, published weights (pytorch-ood's registry,
torchvision's weights API, a package, timm), or training.

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
from oodbench.hashing import stable_hash
from oodbench.models import checkpoints as ckpt
from oodbench.models import weights as published

KIND = ckpt.STAGE


def _network(ctx, backbone: BackboneSpec, model, key: str, origin: str, known=None, info: dict | None = None) -> Network:
    return Network(key, origin, ctx.compute.prepare(model).eval(), known, info or {}, backbone.name)


def _no_checkpoint(backbone: BackboneSpec, id_spec: DatasetSpec, seed: int) -> ConfigError:
    known = sorted({f"{c.dataset} (seed {c.seed})" for c in backbone.checkpoints}) or ["none"]
    return ConfigError(
        f"no checkpoint of backbone '{backbone.name}' for '{id_spec.name}' with seed {seed}; "
        f"published weights exist for: {', '.join(known)}",
        "pass --checkpoint FILE (or pytorch-ood:KEY, torchvision:NAME, timm:MODEL), or --train to train one with the backbone's recipe",
    )


def _with_classes(backbone: BackboneSpec, id_spec: DatasetSpec, key: str) -> str:
    """A network's key: its weights', and for a zero-shot backbone also the class names its final layer is made from."""
    if backbone.class_head is None:
        return key
    if not id_spec.classes:
        raise ConfigError(f"backbone {backbone.name} makes its classifier from the ID set's class names, and {id_spec.name} "
                          "declares none", "use an ID set that declares its classes (DatasetSpec.classes)")
    return stable_hash({"weights": key, "classes": list(id_spec.classes)}, 24)


def task_id(backbone: BackboneSpec, id_spec: DatasetSpec, seed: int) -> str:
    """The checkpoint task's id: one network per backbone, ID dataset and seed of a grid."""
    return f"checkpoint:{backbone.name}/{id_spec.name}:seed{seed}"


def _published_task(ctx, backbone: BackboneSpec, id_spec: DatasetSpec, seed: int, weights, known, resources: Resources) -> Task:
    """The network with published ``weights`` (a :class:`KnownCheckpoint`'s, or ``--checkpoint SCHEME:NAME``)."""
    origin = published.origin(weights)
    key = _with_classes(backbone, id_spec, published.content_key(weights, ctx.sources.digests))

    def run(ctx, inputs):
        model = ckpt.load_published(backbone, weights, id_spec.num_classes, id_spec.stands_for, id_spec.classes)
        return _network(ctx, backbone, model, key, origin, known)

    return Task(task_id(backbone, id_spec, seed), KIND, f"{origin} (seed {seed})", key, run, needs=published.needs(weights),
                resources=resources)


def published_weights(config: RunConfig, backbone: BackboneSpec, id_spec: DatasetSpec, seed: int):
    """The backbone's published weights this run uses for (ID set, seed), or None: when it has weights for the ID
    set or its label space, and the preset asks for published weights or the backbone is never trained."""
    known = backbone.known_checkpoint(id_spec.name, seed, id_spec.label_space)
    return known if known is not None and (config.pretrained or not backbone.trainable) else None


def plan_checkpoint(ctx, config: RunConfig, backbone: BackboneSpec, id_spec: DatasetSpec, seed: int,
                    train: PlannedSplit | None, model_mb: float) -> Task:
    """The task that yields the :class:`Network` of ``seed`` (``model_mb``: MiB of its weights)."""
    loaded = Resources(ctx.compute.device.type, model_mb)
    named = published.parse(config.checkpoint) if config.checkpoint else None
    if named is not None:
        return _published_task(ctx, backbone, id_spec, seed, named, None, loaded)
    if config.checkpoint:
        path = ckpt.weights_file(config.checkpoint)
        key, origin = _with_classes(backbone, id_spec, ckpt.file_hash(path, ctx.sources.digests)), f"file:{path.resolve()}"
        return Task(task_id(backbone, id_spec, seed), KIND, f"{origin} (seed {seed})", key,
                    lambda ctx, inputs: _network(ctx, backbone, ckpt.load_file(backbone, path, id_spec.num_classes, id_spec.stands_for,
                                                                               id_spec.classes), key, origin),
                    resources=loaded)
    known = published_weights(config, backbone, id_spec, seed)
    if known is not None:
        return _published_task(ctx, backbone, id_spec, seed, known.weights, known, loaded)
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
                key, run, inputs={"train": train.task}, work=Work(rate, items, passes=recipe.epochs),
                resources=Resources(ctx.compute.device.type, TRAINING_COPIES * model_mb), collective=True)
