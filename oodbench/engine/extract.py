"""One forward pass per (checkpoint, split): logits and penultimate features for every method.

Methods that read logits or features never run the network themselves; they share this
extraction, which is cached under (checkpoint hash, split content hash, precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from oodbench.data.arrays import SplitArrays
from oodbench.data.batches import pixel_batches
from oodbench.engine.cache import ArtifactCache, save_array
from oodbench.engine.device import Compute
from oodbench.hashing import code_version, stable_hash
from oodbench.models.classifier import ImageClassifier
from oodbench.progress import progress

STAGE = "extract"


@dataclass(frozen=True)
class Extraction:
    """Logits (``N x K``) and features (``N x D``) of one split, float32, with its cache key."""

    split: str
    logits: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    key: str


def extraction_key(checkpoint_hash: str, split: SplitArrays, compute: Compute) -> str:
    return stable_hash(
        {"checkpoint": checkpoint_hash, "split": split.content_hash, "precision": compute.precision,
         "code": code_version(forward_pass)}
    )


@torch.no_grad()
def forward_pass(
    model: ImageClassifier, split: SplitArrays, compute: Compute, batch_size: int,
    on_images: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and features of every image of ``split`` (eval mode, the compute's precision)."""
    model.eval()
    logits, features = [], []
    total = (len(split) + batch_size - 1) // batch_size
    batches = pixel_batches(split.images, batch_size, compute.device, compute.channels_last)
    for pixels in progress(batches, desc=f"extract {split.label}", total=total, unit="batch"):
        with compute.autocast():
            out, feats = model.forward_with_features(pixels)
        logits.append(out.float().cpu().numpy())
        features.append(feats.float().cpu().numpy())
        if on_images is not None:
            on_images(len(pixels))
    return np.concatenate(logits), np.concatenate(features)


def extract(
    model: ImageClassifier,
    checkpoint_hash: str,
    split: SplitArrays,
    compute: Compute,
    cache: ArtifactCache,
    batch_size: int,
    on_images: Callable[[int], None] | None = None,
) -> Extraction:
    """The cached extraction of ``split``, computing it on first use."""
    key = extraction_key(checkpoint_hash, split, compute)
    artifact = cache.get(STAGE, key)
    if artifact is None:
        logits, features = forward_pass(model, split, compute, batch_size, on_images)
        meta = {"split": split.label, "count": len(split), "checkpoint": checkpoint_hash, "precision": compute.precision}
        with cache.put(STAGE, key, meta) as directory:
            save_array(directory, "logits", logits)
            save_array(directory, "features", features)
        return Extraction(split.label, logits, features, np.asarray(split.labels), key)
    return Extraction(split.label, artifact.array("logits"), artifact.array("features"), np.asarray(split.labels), key)
