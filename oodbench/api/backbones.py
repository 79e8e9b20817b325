"""The backbone contract: :class:`BackboneSpec`, its published checkpoints and training recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class KnownCheckpoint:
    """Published weights of a backbone, loaded through pytorch-ood's model registry.

    ``registry_key`` is a key of :func:`pytorch_ood.model.load_model` (URL and sha256 live there).
    ``expected_accuracy`` is the ID test accuracy the weights should reach on ``dataset``; the
    engine checks it whenever that dataset's test split is evaluated.
    """

    dataset: str
    seed: int
    registry_key: str
    expected_accuracy: float | None = None
    tolerance: float = 0.01
    accuracy_source: str = ""


@dataclass(frozen=True)
class TrainingRecipe:
    """The cross-entropy classifier recipe: SGD + Nesterov, cosine schedule per step, crop + flip."""

    epochs: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    batch_size: int = 128
    crop_padding: int = 4
    flip: bool = True
    warmup_epochs: float = 0.0


@dataclass(frozen=True)
class BackboneSpec:
    """A classifier architecture and what oodbench knows about it.

    ``build(num_classes, channels)`` returns a module with ``features(x)`` (penultimate pooled
    features, ``B x feature_dim``) and a final linear layer ``fc``, taking normalised inputs.
    """

    name: str
    build: Callable[[int, int], nn.Module]
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    feature_dim: int
    checkpoints: tuple[KnownCheckpoint, ...] = ()
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)
    description: str = ""
    citation: str = ""
    origin: str = "built-in"

    def known_checkpoint(self, dataset: str, seed: int) -> KnownCheckpoint | None:
        """Published weights for exactly this dataset (a re-encoded copy has other pixels: none)."""
        for checkpoint in self.checkpoints:
            if checkpoint.dataset == dataset and checkpoint.seed == seed:
                return checkpoint
        return None
