"""Where the classifier's weights come from: a user file, pytorch-ood's registry, or training.

Every checkpoint carries a content hash that keys all downstream stages: the sha256 of the
weights file (user files, pytorch-ood downloads) or the cache key of the training stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from oodbench.api import BackboneSpec, KnownCheckpoint, TrainingRecipe
from oodbench.data.arrays import SplitArrays
from oodbench.engine.cache import ArtifactCache
from oodbench.engine.device import Compute
from oodbench.errors import ConfigError, DataError
from oodbench.hashing import DigestMemo, code_version, stable_hash
from oodbench.models import training
from oodbench.models.classifier import ImageClassifier

STAGE = "checkpoints"
REGISTRY_PREFIX = "pytorch-ood:"


@dataclass
class Checkpoint:
    """A classifier ready for evaluation (eval mode, on the compute device) and its identity."""

    model: ImageClassifier
    hash: str
    origin: str
    known: KnownCheckpoint | None = None
    info: dict = field(default_factory=dict)


def build_classifier(backbone: BackboneSpec, num_classes: int) -> ImageClassifier:
    return ImageClassifier(backbone.build(num_classes, backbone.channels), backbone.mean, backbone.std)


def _strip_prefixes(state: dict) -> dict:
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def load_state(model: ImageClassifier, state: dict, where: str) -> None:
    """Load a state dict of either the wrapper (``net.*`` keys) or the bare network."""
    state = _strip_prefixes(state)
    target = model if any(k.startswith("net.") for k in state) else model.net
    try:
        target.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(
            f"weights in {where} do not fit {type(model.net).__name__} with {model.num_classes} classes: {first}",
            "pass a checkpoint of the same backbone (--backbone) trained on the same classes",
        ) from None


def load_registry(backbone: BackboneSpec, key: str, num_classes: int, known: KnownCheckpoint | None) -> Checkpoint:
    """Weights from pytorch-ood's model registry (downloaded once into ``$TORCH_HOME/hub``, sha256-checked)."""
    from pytorch_ood.model import get_model_info, load_model

    try:
        entry = get_model_info(key)
    except ValueError as error:
        raise ConfigError(f"pytorch-ood has no model '{key}'", str(error).split(".")[0]) from None
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        net = load_model(key)
    except Exception as error:  # urllib, HTTP and hash errors all end here
        raise DataError(
            f"pre-trained weights '{key}' could not be loaded from {entry.url}: {error}",
            f"connect to the internet once, or put the file as {hub / entry.file_name}, or pass --checkpoint FILE",
        ) from None
    model = build_classifier(backbone, num_classes)
    load_state(model, net.state_dict(), key)
    return Checkpoint(model, entry.sha256[:24], f"{REGISTRY_PREFIX}{key}", known)


def load_reference(backbone: BackboneSpec, reference: str, num_classes: int, digests: DigestMemo) -> Checkpoint:
    """``--checkpoint``: a state-dict file, or ``pytorch-ood:KEY`` for a registry entry."""
    if reference.startswith(REGISTRY_PREFIX):
        return load_registry(backbone, reference[len(REGISTRY_PREFIX):], num_classes, None)
    path = Path(reference)
    if not path.is_file():
        raise ConfigError(
            f"checkpoint file {path} not found",
            f"give a state-dict file, or {REGISTRY_PREFIX}KEY for pytorch-ood's registry",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch format errors
        raise ConfigError(f"cannot read checkpoint {path}: {error}", "save it with torch.save(model.state_dict(), path)") from None
    model = build_classifier(backbone, num_classes)
    load_state(model, state, str(path))
    return Checkpoint(model, digests.digest(path)[:24], f"file:{path.resolve()}")


def train_or_load(
    backbone: BackboneSpec,
    id_dataset: str,
    num_classes: int,
    train: SplitArrays,
    recipe: TrainingRecipe,
    seed: int,
    compute: Compute,
    cache: ArtifactCache,
    on_images: Callable[[int], None] | None = None,
) -> Checkpoint:
    """A classifier trained with the CE recipe, from the cache when the same training ran before."""
    model = build_classifier(backbone, num_classes)
    key = stable_hash(
        {
            "backbone": backbone.name,
            "architecture": code_version(type(model.net)),
            "num_classes": num_classes,
            "train": train.content_hash,
            "recipe": recipe,
            "seed": seed,
            "precision": compute.precision,
            "compiled": training.uses_compile(compute, len(train), recipe),
            "training": code_version(training),
        }
    )
    artifact = cache.get(STAGE, key)
    if artifact is None:
        model = compute.prepare(model)
        started = time.perf_counter()
        info = training.train_classifier(
            model, train.images, train.labels, recipe, seed, compute, cache.scratch(STAGE, key),
            desc=f"train {backbone.name} on {id_dataset}", on_images=on_images,
        )
        info.update(wall_seconds=time.perf_counter() - started, recipe=recipe, seed=seed, train_split=train.label,
                    train_count=len(train), backbone=backbone.name, id_dataset=id_dataset)
        with cache.put(STAGE, key, info) as directory:
            torch.save(model.state_dict(), directory / "model.pt")
        cache.drop_scratch(STAGE, key)
        artifact = cache.open(STAGE, key)
    load_state(model, torch.load(artifact.file("model.pt"), map_location="cpu", weights_only=True), str(artifact.path))
    return Checkpoint(model, key, f"trained:{backbone.name}/{id_dataset}/seed{seed}", None, dict(artifact.meta))
