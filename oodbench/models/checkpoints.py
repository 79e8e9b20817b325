"""Where the classifier's weights come from: a user file, published weights (pytorch-ood's registry,
torchvision's weights API, a package, timm: :mod:`oodbench.models.weights`), or training.

Every checkpoint has a content hash that keys all downstream stages, known before any weights
are loaded: the sha256 of the weights file (user files, packages; pytorch-ood's registry lists it for
its downloads, torchvision's file names carry its prefix) or the cache key of the training stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from oodbench.api import BackboneSpec, TrainingRecipe
from oodbench.data.arrays import SplitArrays
from oodbench.engine.cache import ArtifactCache
from oodbench.engine.device import Compute
from oodbench.errors import ConfigError
from oodbench.hashing import DigestMemo, code_closure, stable_hash
from oodbench.models import distributed, training
from oodbench.models import weights as published
from oodbench.models.classifier import ImageClassifier

STAGE = "checkpoint"


def build_classifier(backbone: BackboneSpec, num_classes: int, dataset: str | None = None) -> ImageClassifier:
    """The backbone with ``num_classes`` outputs and the input normalisation of ID set ``dataset`` (the name it stands for)."""
    mean, std = backbone.statistics(dataset)
    return ImageClassifier(backbone.build(num_classes, backbone.channels), mean, std, backbone.layers)


def _strip_prefixes(state: dict) -> dict:
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def renamed(state: dict, renames: tuple[tuple[str, str], ...]) -> dict:
    """A released file's keys in the network's naming: each key takes the first ``(prefix, replacement)``
    whose prefix it starts with."""
    def rename(key: str) -> str:
        for prefix, replacement in renames:
            if key.startswith(prefix):
                return replacement + key[len(prefix):]
        return key
    return {rename(key): value for key, value in state.items()}


def load_state(model: ImageClassifier, state: dict, where: str, renames: tuple[tuple[str, str], ...] = (),
               derived: tuple[str, ...] = ()) -> None:
    """Load a state dict of the wrapper (``net.*`` keys), of the bare network, or of the network in the
    naming of its released files (``renames``: :attr:`BackboneSpec.state_renames`). Keys of the network starting
    with a ``derived`` prefix may be missing (a zero-shot backbone's final layer, made from class names)."""
    state = _strip_prefixes(state)
    if renames and not state.keys() <= model.net.state_dict().keys() and not any(k.startswith("net.") for k in state):
        state = renamed(state, renames)
    target = model if any(k.startswith("net.") for k in state) else model.net
    prefix = "net." if target is model else ""
    try:
        missing, unexpected = target.load_state_dict(state, strict=False)
        missing = [key for key in missing if not key.startswith(tuple(prefix + d for d in derived))]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(
            f"weights in {where} do not fit {type(model.net).__name__} with {model.num_classes} classes: {first}",
            "pass a checkpoint of the same backbone (--backbone) trained on the same classes",
        ) from None


#: what a zero-shot backbone's weights may leave out: its final layer, made from the class names
CLASS_HEAD = ("fc.",)


def with_class_head(backbone: BackboneSpec, model: ImageClassifier, classes: Sequence[str] | None) -> ImageClassifier:
    """``model`` with its final layer made from ``classes`` when ``backbone`` is zero-shot (:attr:`BackboneSpec.class_head`)."""
    if backbone.class_head is not None:
        if not classes:
            raise ConfigError(f"backbone {backbone.name} makes its classifier from the ID set's class names, and the ID set declares none",
                              "use an ID set that declares its classes (DatasetSpec.classes)")
        with torch.no_grad():
            backbone.class_head(model.net, list(classes))
    return model


def load_published(backbone: BackboneSpec, weights, num_classes: int, dataset: str | None,
                   classes: Sequence[str] | None = None) -> ImageClassifier:
    """A classifier with published ``weights`` (:mod:`oodbench.models.weights`), normalised for ID set ``dataset``
    (``classes``: its class names, for a zero-shot backbone)."""
    model = build_classifier(backbone, num_classes, dataset)
    load_state(model, published.state_dict(weights), published.origin(weights), backbone.state_renames,
               CLASS_HEAD if backbone.class_head else ())
    return with_class_head(backbone, model, classes)


def weights_file(reference: str) -> Path:
    """``--checkpoint FILE``: the file, which must exist."""
    path = Path(reference)
    if not path.is_file():
        raise ConfigError(f"checkpoint file {path} not found",
                          "give a state-dict file, pytorch-ood:KEY for pytorch-ood's registry, torchvision:NAME for "
                          "torchvision's weights (ResNet50_Weights.IMAGENET1K_V1), or timm:MODEL for timm's")
    return path


def file_hash(path: Path, digests: DigestMemo) -> str:
    return digests.digest(path)[:24]


def load_file(backbone: BackboneSpec, path: Path, num_classes: int, dataset: str | None = None,
              classes: Sequence[str] | None = None) -> ImageClassifier:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch format errors
        raise ConfigError(f"cannot read checkpoint {path}: {error}", "save it with torch.save(model.state_dict(), path)") from None
    model = build_classifier(backbone, num_classes, dataset)
    load_state(model, state, str(path), backbone.state_renames, CLASS_HEAD if backbone.class_head else ())
    return with_class_head(backbone, model, classes)


def trained_key(backbone: BackboneSpec, num_classes: int, train_key: str, recipe: TrainingRecipe, seed: int,
                compute: Compute) -> str:
    """Cache key of a classifier trained with the CE recipe (whether it may compile is part of it:
    compiled and eager training differ in the last bits), with the code of the training and of the
    backbone's architecture."""
    architecture = backbone.build(num_classes, backbone.channels).__class__
    return stable_hash({"backbone": backbone.name, "num_classes": num_classes, "train": train_key, "recipe": recipe, "seed": seed,
                        "precision": compute.precision, "compile": compute.compile,
                        "code": code_closure(__name__, backbone.build, architecture)})


def train_or_load(backbone: BackboneSpec, id_dataset: str, num_classes: int, train: SplitArrays, recipe: TrainingRecipe,
                  seed: int, compute: Compute, cache: ArtifactCache, key: str,
                  on_images: Callable[[int], None] | None = None,
                  on_trained: Callable[[int, float], None] | None = None,
                  stands_for: str | None = None) -> tuple[ImageClassifier, dict]:
    """A classifier trained with the CE recipe, from the cache when the same training ran before.
    ``on_trained(images, seconds)`` hears of a training run in this call (not of a resumed one's
    earlier epochs). The initial weights come from ``seed``, whatever ran before in the process.
    In a process group, rank 0 writes the cache and the other ranks train beside it without writing.
    ``stands_for``: the dataset whose input statistics apply (:meth:`BackboneSpec.statistics`), else ``id_dataset``."""
    torch.manual_seed(seed)
    model = compute.prepare(build_classifier(backbone, num_classes, stands_for or id_dataset))

    def compute_(directory: Path) -> dict:
        started = time.perf_counter()
        info = training.train_classifier(model, train.images, train.labels, recipe, seed, compute, cache.scratch(STAGE, key),
                                         desc=f"train {backbone.name} on {id_dataset}", on_images=on_images)
        torch.save(model.state_dict(), directory / "model.pt")
        if on_trained is not None:
            on_trained((recipe.epochs - info["resumed_from_epoch"]) * info["train_images"], info["train_seconds"])
        return {**info, "wall_seconds": time.perf_counter() - started, "recipe": recipe, "seed": seed,
                "train_split": train.label, "train_count": len(train), "backbone": backbone.name, "id_dataset": id_dataset}

    def load(artifact) -> tuple[ImageClassifier, dict]:
        load_state(model, torch.load(artifact.file("model.pt"), map_location="cpu", weights_only=True), str(artifact.path))
        return model, dict(artifact.meta)

    return distributed.cached(cache, STAGE, key, compute_, load)
