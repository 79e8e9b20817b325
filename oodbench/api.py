"""Plugin contracts: what a method, a dataset, a backbone and a preset declare.

Plugins say *what*; the engine decides *how*. A method declares which representations it
reads (:class:`Reads`), whether it fits on the ID training split and whether it fine-tunes the
classifier; the engine plans extraction, caching and devices from those declarations alone.

A method file in ``methods/`` (or any directory passed with ``--plugins``) defines a subclass of
:class:`Method` with a ``name``; a dataset file defines :class:`DatasetSpec` objects; a backbone
file :class:`BackboneSpec` objects; a preset file :class:`Preset` objects. Discovery finds them.

This module is the contract and nothing else: importing it loads no other oodbench module (and
not torch), so a plugin that only declares things is cheap to import and cannot reach into the
engine through it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Iterable, Iterator, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor, nn

__all__ = [
    "Reads",
    "Capabilities",
    "Head",
    "Classifier",
    "ImageBatches",
    "FitInputs",
    "ScoreInputs",
    "UndeclaredRead",
    "TrainingContext",
    "Method",
    "NoParams",
    "DatasetSpec",
    "BackboneSpec",
    "KnownCheckpoint",
    "TrainingRecipe",
    "Preset",
]


class Reads(str, enum.Enum):
    """A representation a method reads to fit or score."""

    #: logits of the ID classes (the first K outputs), one forward pass shared by all methods
    LOGITS = "logits"
    #: every output of the network, also those a training method added after the ID classes
    ALL_LOGITS = "all_logits"
    #: penultimate pooled features, from the same shared forward pass
    FEATURES = "features"
    #: weight and bias of the final linear layer
    HEAD = "head"
    #: the images themselves and the network, for methods that re-run it (input gradients)
    IMAGES = "images"


#: Representations that come from the one forward pass every method shares.
EXTRACTED = frozenset({Reads.LOGITS, Reads.ALL_LOGITS, Reads.FEATURES})


@dataclass(frozen=True)
class Capabilities:
    """What a configured method needs from the engine.

    ``fits`` means the method is fitted on the ID **training** split, reading there the same
    representations it reads at scoring time. ``trains`` means the method fine-tunes the
    classifier (:meth:`Method.train`); it then reads its representations from the fine-tuned
    network. ``aux`` means training needs auxiliary outliers. ``attack`` says how adversarial
    evaluation reaches the method: ``"score"`` (:meth:`Method.attack_score` is its own score,
    differentiable in the input), ``"surrogate"`` (a declared differentiable stand-in for it), or
    ``None``: not attacked, and reported so.
    """

    reads: frozenset[Reads]
    fits: bool = False
    trains: bool = False
    aux: bool = False
    attack: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads", frozenset(Reads(r) for r in self.reads))
        if self.attack not in (None, "score", "surrogate"):
            raise ValueError(f"attack must be 'score', 'surrogate' or None, not {self.attack!r}")

    @property
    def extracted(self) -> frozenset[Reads]:
        """The representations that come from the shared extraction pass."""
        return self.reads & EXTRACTED

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


class Classifier(Protocol):
    """The network every stage works with: pixels in ``[0, 1]`` in (normalisation inside), logits out.

    ``num_classes`` ID classes are the first outputs; ``num_outputs`` may be larger when a training
    method added outputs (``add_outputs``), e.g. ATOM's outlier class.
    """

    num_classes: int
    #: the per-channel standard deviation the network normalises its pixels with, ``1 x C x 1 x 1``
    std: Tensor

    @property
    def num_outputs(self) -> int: ...

    def add_outputs(self, extra: int) -> None: ...

    @property
    def feature_dim(self) -> int: ...

    def __call__(self, pixels: Tensor) -> Tensor: ...

    def features(self, pixels: Tensor) -> Tensor: ...

    def forward_with_features(self, pixels: Tensor) -> tuple[Tensor, Tensor]: ...

    def class_logits(self, pixels: Tensor) -> Tensor: ...

    def head(self) -> Head: ...


class ImageBatches:
    """Images of one split and the network, for methods that declare :attr:`Reads.IMAGES`.

    Iterating yields batches of pixel tensors in ``[0, 1]``, shape ``B x C x H x W``, on the
    engine's device. ``model`` maps such pixels to its outputs (normalisation is inside it), so an
    input-space step of size ``eps`` is in pixel units; the ID classes are the first
    ``model.num_classes`` outputs. ``precision()`` is the engine's autocast context.
    """

    def __init__(
        self,
        model: Classifier,
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


class UndeclaredRead(Exception):
    """A method asked for a representation it did not declare, or for something scoring never sees.

    Not an ``AttributeError`` on purpose: ``getattr(data, "labels", None)`` must fail, not quietly
    return a default.
    """


class _Inputs:
    """Representations of one split, handed out only as far as the method declared them."""

    _PUBLIC: ClassVar[frozenset[str]] = frozenset({"logits", "all_logits", "features", "head", "images", "num_classes"})

    def __init__(self, method: str, declared: frozenset[Reads], values: Mapping[Reads, Any], num_classes: int) -> None:
        object.__setattr__(self, "_method", method)
        object.__setattr__(self, "_declared", frozenset(declared))
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "num_classes", num_classes)

    def _read(self, read: Reads) -> Any:
        if read not in self._declared:
            raise UndeclaredRead(
                f"method '{self._method}' reads '{read.value}' but declares only "
                f"{sorted(r.value for r in self._declared) or 'nothing'}: add Reads.{read.name} to its reads (or capabilities())"
            )
        return self._values[read]

    @property
    def logits(self) -> Tensor:
        """``N x K`` float32 logits (:attr:`Reads.LOGITS`)."""
        return self._read(Reads.LOGITS)

    @property
    def all_logits(self) -> Tensor:
        """``N x O`` float32 outputs, ID classes first (:attr:`Reads.ALL_LOGITS`)."""
        return self._read(Reads.ALL_LOGITS)

    @property
    def features(self) -> Tensor:
        """``N x D`` float32 penultimate features (:attr:`Reads.FEATURES`)."""
        return self._read(Reads.FEATURES)

    @property
    def head(self) -> Head:
        """The final linear layer (:attr:`Reads.HEAD`)."""
        return self._read(Reads.HEAD)

    @property
    def images(self) -> ImageBatches:
        """Pixel batches and the network (:attr:`Reads.IMAGES`)."""
        return self._read(Reads.IMAGES)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"inputs are read-only (tried to set '{name}')")


class ScoreInputs(_Inputs):
    """What :meth:`Method.score` sees: one split's declared representations and ``num_classes``.

    Nothing else: no labels, no split name, no role, no seed. Samples come in an order drawn by
    the engine, and every split is scored by a fresh method instance rebuilt from the fitted
    state, so a method can tell ID from OOD only by its own score.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # protocol probes (copy, display) get the usual answer
            raise AttributeError(name)
        raise UndeclaredRead(
            f"score() inputs have no '{name}': a method sees only the representations it declared "
            f"({', '.join(sorted(self._PUBLIC))}); labels and the split's identity are hidden by design"
        )


class FitInputs(_Inputs):
    """What :meth:`Method.fit` sees: the ID training split's declared representations and labels.

    ``scratch`` is a directory kept across interruptions (save state between epochs there with
    :class:`oodbench.models.training.EpochState`); ``progress`` wraps an iterable in the engine's
    progress display.
    """

    def __init__(self, method: str, declared: frozenset[Reads], values: Mapping[Reads, Any], num_classes: int,
                 labels: Tensor, seed: int, scratch: Path, progress: Callable[..., Iterable]) -> None:
        super().__init__(method, declared, values, num_classes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "scratch", scratch)
        object.__setattr__(self, "progress", progress)


@dataclass
class TrainingContext:
    """What :meth:`Method.train` gets: the classifier to fine-tune in place and the data.

    ``model`` is a copy of the base classifier on the engine's device (pixels in [0, 1] in,
    normalisation inside), in training mode unless the method switches it. Images are uint8
    ``N x H x W x C`` arrays in the backbone's format; :meth:`pixels` turns a batch of them into
    the model's input. ``backward_step(loss, optimizer)`` zeroes the gradients, back-propagates
    (with loss scaling when the engine trains in float16) and steps. ``scratch`` survives an
    interruption: save state there between epochs (:class:`oodbench.models.training.EpochState`)
    and the stage resumes on the next run.
    """

    model: Classifier
    id_images: np.ndarray
    id_labels: np.ndarray
    aux_images: np.ndarray | None
    num_classes: int
    seed: int
    device: torch.device
    precision: Callable[[], ContextManager]
    scratch: Path
    desc: str
    to_pixels: Callable[[np.ndarray], Tensor]
    progress_display: Callable[..., Iterable]
    backward_step: Callable[[Tensor, torch.optim.Optimizer], None]
    on_images: Callable[[int], None] = lambda count: None

    def pixels(self, images: np.ndarray) -> Tensor:
        """A uint8 ``B x H x W x C`` batch as the model's float input ``B x C x H x W`` in [0, 1]."""
        return self.to_pixels(images)

    def progress(self, iterable: Iterable, desc: str, total: int | None = None, unit: str = "batch") -> Iterable:
        """The engine's progress display (bar on a terminal, periodic lines in a log)."""
        return self.progress_display(iterable, desc=f"{self.desc} {desc}", total=total, unit=unit)


@dataclass(frozen=True)
class NoParams:
    """Parameters of a method that has none."""


class Method:
    """Base class of every OOD detection method.

    Subclasses set ``name``, ``citation`` and ``summary``, a frozen ``Params`` dataclass with the
    defaults of the original paper, and implement :meth:`score` (higher = more OOD); fitted
    methods implement :meth:`fit`, which returns the fitted *state* (tensors, arrays, numbers,
    strings, lists and dicts of them): the engine caches that state and hands it to a fresh
    instance as ``self.state`` before every :meth:`score`.

    Settings the method owns: ``dataset_defaults`` (parameter overrides per ID dataset, e.g.
    MIM's ``k``; a re-encoded copy gets those of the dataset it stands for), ``preset_defaults``
    (overrides per preset, e.g. fewer fine-tuning epochs in ``quick``), ``default_aux`` (the
    auxiliary outlier set a training method uses when none is given), ``table_order`` (its row
    in paper-style tables), and what a named protocol (``--protocol``) changes:
    ``protocol_defaults`` (parameter overrides per protocol; a key ``"PROTOCOL:DATASET"`` applies
    only to that ID dataset) and ``fit_split_under`` (the ID split the method fits on under a
    protocol, when not the training split). The protocol ``clean`` is every method's own paper
    setting, fitted on the ID training split.
    """

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    dataset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    preset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_aux: ClassVar[str | None] = None
    reads: ClassVar[frozenset[Reads]] = frozenset()
    fits: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    uses_aux: ClassVar[bool] = False
    #: :meth:`train` is data-parallel (``oodbench.models.distributed``): under ``torchrun`` every process
    #: takes part in the fine-tuning; otherwise the first process fine-tunes alone
    distributed: ClassVar[bool] = False
    #: how adversarial evaluation reaches the method (see :class:`Capabilities`); None: not attacked
    attacked_through: ClassVar[str | None] = None
    protocol_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    fit_split_under: ClassVar[Mapping[str, str]] = {}
    #: the values ``--tune`` tries per parameter (every combination), chosen on validation data
    search_space: ClassVar[Mapping[str, Sequence[Any]]] = {}
    #: rows of paper-style tables sort by this: the MIM paper's order for its baselines (10-100),
    #: other post-hoc methods after them, training-time methods from 200; unranked methods last
    table_order: ClassVar[int] = 1000

    def __init__(self, params: Any = None, state: Mapping[str, Any] | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.state = state

    def capabilities(self) -> Capabilities:
        """What the engine must provide; override when it depends on the parameters."""
        return Capabilities(reads=self.reads, fits=self.fits, trains=self.trains, aux=self.uses_aux,
                            attack=self.attacked_through)

    def train(self, context: TrainingContext) -> dict:
        """Fine-tune ``context.model`` in place (only called when ``trains``); returns a summary."""
        raise NotImplementedError(f"{type(self).__name__} declares trains=True but does not implement train()")

    def training_images(self, n_id: int, n_aux: int) -> int:
        """Images :meth:`train` passes forward and backward, for the plan's cost estimate."""
        return int(getattr(self.params, "epochs", 1)) * n_id

    def fit(self, train: FitInputs) -> dict:
        """Fit on the ID training split (only called when ``fits``); returns the fitted state."""
        raise NotImplementedError(f"{type(self).__name__} declares fits=True but does not implement fit()")

    def score(self, data: ScoreInputs) -> Tensor:
        """Outlier scores of one split, shape ``N``; higher means more likely OOD."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def attack_score(self, model: Classifier, pixels: Tensor) -> Tensor:
        """Outlier scores of a batch of pixels in [0, 1], differentiable in them (adversarial
        evaluation; only called when the capabilities declare ``attack``). Uses ``self.state``."""
        raise NotImplementedError(f"{type(self).__name__} declares an attack route but does not implement attack_score()")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its role, splits (each an :class:`oodbench.data.source.Source`), and for ID sets its classes.

    ``default_ood`` (ID sets only) is the OOD list a run uses when ``--ood`` is not given.
    ``near_ood`` / ``far_ood`` (ID sets only) group OOD sets in tables, as OpenOOD v1.5 does per ID
    set: each entry names an OOD dataset, the dataset it stands for, or its ``source``.
    ``source`` names the collection the images were drawn from (sets of one source may overlap);
    ``same_as`` names the dataset a re-encoded copy stands for: the copy gets that dataset's
    method defaults and published numbers (never its pre-trained weights).
    """

    name: str
    role: str
    splits: Mapping[str, Any]
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    description: str = ""
    citation: str = ""
    default_ood: tuple[str, ...] = ()
    near_ood: tuple[str, ...] = ()
    far_ood: tuple[str, ...] = ()
    source: str | None = None
    same_as: str | None = None
    origin: str = "built-in"

    def __post_init__(self) -> None:
        if self.role not in {"id", "ood", "aux"}:
            raise ValueError(f"dataset '{self.name}' has role {self.role!r}; use 'id', 'ood' or 'aux'")
        if self.role == "id" and not self.num_classes:
            raise ValueError(f"ID dataset '{self.name}' must declare num_classes")

    @property
    def stands_for(self) -> str:
        """The dataset whose settings and published numbers apply: ``same_as``, else the dataset itself."""
        return self.same_as or self.name

    def ood_group(self, ood: "DatasetSpec") -> str:
        """'near' or 'far' when this ID set declares where ``ood`` belongs, else ''."""
        names = {ood.name, ood.stands_for, ood.source} - {None}
        for group, members in (("near", self.near_ood), ("far", self.far_ood)):
            if names & set(members):
                return group
        return ""


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


@dataclass(frozen=True)
class Preset:
    """Named defaults of a run; every value can be overridden on the command line.

    ``default_for`` says when ``oodbench run`` picks the preset without ``--preset``: ``"no-id"``
    (no ``--id`` given), ``"cuda"`` (an ID set on a machine with CUDA) or ``"cpu"`` (without).
    Methods declare their own per-preset settings (:attr:`Method.preset_defaults`).
    """

    name: str
    description: str
    backbone: str
    #: use the backbone's published checkpoint for (ID dataset, seed) when there is one
    pretrained: bool
    #: train the backbone with its recipe when no checkpoint is given or known
    train: bool
    #: epochs of backbone training (None: the backbone recipe's own)
    epochs: int | None = None
    #: images per test split (ID test and each OOD set); None = all
    limit: int | None = None
    #: images of the ID training split (backbone training and fitting); None = all
    train_limit: int | None = None
    #: default ID dataset when --id is not given
    id_dataset: str | None = None
    #: inference batch size; None: measured on the device (``engine/batching.py``)
    batch_size: int | None = None
    default_for: frozenset[str] = frozenset()
    origin: str = "built-in"
