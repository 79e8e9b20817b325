"""Plugin contracts: what a method, a dataset and a backbone declare.

Plugins say *what*; the engine decides *how*. A method declares which representations it
reads (:class:`Reads`) and whether it fits on the ID training split; the engine plans the
extraction, caching and device placement from those declarations alone.

A method file in ``methods/`` (or any directory passed with ``--plugins``) defines a subclass of
:class:`Method` with a ``name``; a dataset file defines :class:`DatasetSpec` objects; a backbone
file defines :class:`BackboneSpec` objects. Discovery finds them; nothing needs registering.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from oodbench.data.batches import to_pixels
from oodbench.data.source import Source
from oodbench.errors import ConfigError
from oodbench.progress import progress

if TYPE_CHECKING:
    from oodbench.models.classifier import ImageClassifier

__all__ = [
    "Reads",
    "Capabilities",
    "Head",
    "Representations",
    "ImageBatches",
    "TrainingContext",
    "Method",
    "NoParams",
    "DatasetSpec",
    "BackboneSpec",
    "KnownCheckpoint",
    "TrainingRecipe",
    "Source",
]


class Reads(str, enum.Enum):
    """A representation a method reads to fit or score."""

    #: logits of the classifier, one forward pass shared by all methods
    LOGITS = "logits"
    #: penultimate pooled features, from the same shared forward pass
    FEATURES = "features"
    #: weight and bias of the final linear layer
    HEAD = "head"
    #: the images themselves and the network, for methods that re-run it (input gradients)
    IMAGES = "images"


@dataclass(frozen=True)
class Capabilities:
    """What a configured method needs from the engine.

    ``fits`` means the method is fitted on the ID **training** split, reading there the same
    representations it reads at scoring time (those of ``reads`` that the shared extraction provides).
    ``trains`` means the method fine-tunes the classifier (:meth:`Method.train`); it then reads
    its representations from the fine-tuned network. ``aux`` means training needs auxiliary
    outliers (``--aux``).
    """

    reads: frozenset[Reads]
    fits: bool = False
    trains: bool = False
    aux: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads", frozenset(Reads(r) for r in self.reads))

    @property
    def extracted(self) -> frozenset[Reads]:
        """The representations that come from the shared extraction pass."""
        return self.reads & {Reads.LOGITS, Reads.FEATURES}

    def describe(self) -> str:
        order = [r for r in Reads if r in self.reads]
        parts = ["+".join(r.value for r in order)]
        if self.trains:
            parts.append("fine-tunes the classifier" + (" with aux outliers" if self.aux else ""))
        if self.fits:
            parts.append("fit on ID train")
        return ", ".join(parts)


@dataclass(frozen=True)
class Head:
    """The final linear layer ``logits = features @ weight.T + bias``."""

    weight: Tensor
    bias: Tensor


class ImageBatches:
    """Images of one split and the network, for methods that declare :attr:`Reads.IMAGES`.

    Iterating yields batches of pixel tensors in ``[0, 1]``, shape ``B x C x H x W``, on the
    engine's device. ``model`` maps such pixels to logits (normalisation is inside it), so an
    input-space step of size ``eps`` is in pixel units. ``precision()`` is the engine's
    autocast context; the engine already enters it around ``score``.
    """

    def __init__(
        self,
        model: "ImageClassifier",
        batches: Callable[[], Iterator[Tensor]],
        count: int,
        precision: Callable[[], ContextManager],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.model = model
        self._batches = batches
        self.count = count
        self.precision = precision
        self._on_batch = on_batch

    def __iter__(self) -> Iterator[Tensor]:
        for batch in self._batches():
            if self._on_batch is not None:
                self._on_batch(len(batch))
            yield batch

    def __len__(self) -> int:
        return self.count


@dataclass
class Representations:
    """What the engine hands to :meth:`Method.fit` and :meth:`Method.score`.

    Only the fields the method declared are filled; the others are ``None``. Tensors are
    float32 on the engine's device; ``labels`` are class indices (``-1`` for OOD samples).
    """

    labels: Tensor | None = None
    logits: Tensor | None = None
    features: Tensor | None = None
    head: Head | None = None
    images: ImageBatches | None = None
    num_classes: int | None = None
    #: while fitting: a directory kept across interruptions, for state saved between epochs
    scratch: Path | None = None
    #: the run's seed (the engine also seeds torch's global generator with it before fit and score)
    seed: int = 0

    def require(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise RuntimeError(
                f"the engine did not provide '{name}': the method must declare it in capabilities()"
            )
        return value


@dataclass
class TrainingContext:
    """What :meth:`Method.train` gets: the classifier to fine-tune in place and the data.

    ``model`` is a copy of the base classifier on the engine's device (pixels in [0, 1] in,
    normalisation inside), in training mode unless the method switches it. Images are uint8
    ``N x H x W x C`` arrays in the backbone's format; :meth:`pixels` turns a batch of them into
    the model's input. ``scratch`` survives an interruption: save state there between epochs
    (:class:`oodbench.models.training.EpochState`) and the stage resumes on the next run.
    """

    model: "ImageClassifier"
    id_images: np.ndarray
    id_labels: np.ndarray
    aux_images: np.ndarray | None
    num_classes: int
    seed: int
    device: torch.device
    channels_last: bool
    precision: Callable[[], ContextManager]
    scratch: Path
    desc: str
    on_images: Callable[[int], None] = lambda count: None

    def pixels(self, images: np.ndarray) -> Tensor:
        """A uint8 ``B x H x W x C`` batch as the model's float input ``B x C x H x W`` in [0, 1]."""
        return to_pixels(images, self.device, self.channels_last)

    def progress(self, iterable: Iterable, desc: str, total: int | None = None, unit: str = "batch") -> Iterable:
        """The engine's progress display (bar on a terminal, periodic lines in a log)."""
        return progress(iterable, desc=f"{self.desc} {desc}", total=total, unit=unit)


@dataclass(frozen=True)
class NoParams:
    """Parameters of a method that has none."""


class Method:
    """Base class of every OOD detection method.

    Subclasses set ``name``, ``citation`` and ``summary``, a ``Params`` dataclass with the
    defaults of the original paper, optionally ``dataset_defaults`` (per-ID-dataset overrides
    of those defaults, e.g. MIM's ``k``), and implement :meth:`score` (higher = more OOD) and,
    for fitted methods, :meth:`fit`. ``reads``/``fits`` declare the capabilities; override
    :meth:`capabilities` when they depend on the parameters.
    """

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    dataset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    reads: ClassVar[frozenset[Reads]] = frozenset()
    fits: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    uses_aux: ClassVar[bool] = False

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()

    @classmethod
    def parameters_for(cls, id_dataset: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """The parameters for an ID dataset: class defaults, then dataset defaults, then overrides.

        Override values given as strings (from the command line) are converted to the type of the
        field's default. Unknown names raise :class:`ConfigError` naming the valid ones.
        """
        values: dict[str, Any] = dict(cls.dataset_defaults.get(id_dataset, {}))
        fields = {f.name: f for f in dataclasses.fields(cls.Params)}
        for key, value in (overrides or {}).items():
            if key not in fields:
                valid = ", ".join(sorted(fields)) or "none"
                raise ConfigError(
                    f"method '{cls.name}' has no parameter '{key}'",
                    f"use one of: {valid}",
                )
            values[key] = _coerce(value, cls.Params(), key, cls.name)
        return dataclasses.replace(cls.Params(), **values)

    def capabilities(self) -> Capabilities:
        return Capabilities(reads=self.reads, fits=self.fits, trains=self.trains, aux=self.uses_aux)

    def train(self, context: "TrainingContext") -> dict:
        """Fine-tune ``context.model`` in place (only called when ``trains``); returns a summary."""
        raise NotImplementedError(f"{type(self).__name__} declares trains=True but does not implement train()")

    def fit(self, train: Representations) -> None:
        """Fit on representations of the ID training split (only called when ``fits``)."""

    def score(self, data: Representations) -> Tensor:
        """Outlier scores of one split, shape ``N``; higher means more likely OOD."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")


def _coerce(value: Any, defaults: Any, key: str, method: str) -> Any:
    """Convert a command-line string to the type of a parameter's default value."""
    default = getattr(defaults, key)
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(value)
            return value.lower() in {"true", "1", "yes"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if default is None:
            return _parse_loose(value)
    except ValueError:
        raise ConfigError(
            f"parameter {method}.{key}={value!r} is not a valid {type(default).__name__}",
            f"give a value like {default!r}",
        ) from None
    raise ConfigError(f"parameter {method}.{key} of type {type(default).__name__} cannot be set from text")


def _parse_loose(value: str) -> Any:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"none": None, "true": True, "false": False}.get(value.lower(), value)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its role, splits (each a :class:`Source`), and for ID sets its classes.

    ``default_ood`` (ID sets only) is the OOD list a run uses when ``--ood`` is not given.
    """

    name: str
    role: str
    splits: Mapping[str, Source]
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    description: str = ""
    citation: str = ""
    default_ood: tuple[str, ...] = ()
    origin: str = "built-in"

    def __post_init__(self) -> None:
        if self.role not in {"id", "ood", "aux"}:
            raise ConfigError(f"dataset '{self.name}' has role {self.role!r}", "use 'id', 'ood' or 'aux'")
        if self.role == "id" and not self.num_classes:
            raise ConfigError(f"ID dataset '{self.name}' must declare num_classes")

    def source(self, split: str) -> Source:
        if split not in self.splits:
            raise ConfigError(
                f"dataset '{self.name}' has no split '{split}'",
                f"available splits: {', '.join(self.splits)}",
            )
        return self.splits[split]


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
        for checkpoint in self.checkpoints:
            if checkpoint.dataset == dataset and checkpoint.seed == seed:
                return checkpoint
        return None

