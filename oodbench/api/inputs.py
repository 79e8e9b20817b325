"""The method contract, part one: what a method reads, and the inputs the engine hands it.

:class:`Reads` names a representation; :class:`ScoreInputs` and :class:`FitInputs` hand out exactly
the representations a method declared; :class:`TrainingContext` is what a training-time method
fine-tunes with.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Iterable, Iterator, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor


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
    #: outputs of intermediate layers the backbone exposes (:attr:`Capabilities.layers` says which, and how
    #: reduced), from the same shared forward pass
    LAYERS = "layers"


#: Representations that come from the one forward pass every method shares.
EXTRACTED = frozenset({Reads.LOGITS, Reads.ALL_LOGITS, Reads.FEATURES, Reads.LAYERS})


class Reduction(str, enum.Enum):
    """How a layer's output is kept per sample: what the extraction stores and the method is handed."""

    #: the output itself, float32: ``N x C x H x W`` for a feature map (``N x T x C`` for tokens)
    MAP = "map"
    #: the mean over every axis after the channels, ``N x C``: channel-wise pooling, as feature-statistics
    #: detectors (multi-layer Mahalanobis) read a map; small whatever the map's size
    CHANNEL_MEAN = "channel_mean"
    #: the row sums of the higher-order Gram matrices of the map, ``N x P x C`` for the orders ``p = 1..P``
    #: (:data:`GRAM_ORDERS`): with ``F`` the ``C x HW`` map, row ``c`` of ``(F^p F^p^T)`` summed, then its signed
    #: ``p``-th root (``F^p`` elementwise); the channel correlations Gram-matrix detectors compare
    GRAM = "gram"


#: the orders ``p = 1..GRAM_ORDERS`` of :attr:`Reduction.GRAM` (the Gram-matrix paper's 10)
GRAM_ORDERS = 10


#: a declared layer read meaning every layer the backbone exposes, in forward order
EVERY_LAYER = "*"


@dataclass(frozen=True)
class Head:
    """The final linear layer ``logits = features @ weight.T + bias``."""

    weight: Tensor
    bias: Tensor


class Classifier(Protocol):
    """The network every stage works with: pixels in ``[0, 1]`` in (normalisation inside), logits out.

    ``num_classes`` ID classes are the first outputs; ``num_outputs`` may be larger when a training
    method added outputs (``add_outputs``), e.g. ATOM's outlier class. ``forward_with_layers(pixels, names)`` gives
    the logits and the outputs of intermediate layers the backbone exposes (by the names ``ScoreInputs.layers`` uses),
    unreduced and in the graph.
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

    def forward_with_layers(self, pixels: Tensor, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]: ...

    def head(self) -> Head: ...


class ImageBatches:
    """Images of one batch (or split) and the network, for methods that declare :attr:`Reads.IMAGES`.

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
    """Representations of one batch (or split), handed out only as far as the method declared them."""

    _PUBLIC: ClassVar[frozenset[str]] = frozenset({"logits", "all_logits", "features", "head", "images", "layers", "num_classes"})

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

    @property
    def layers(self) -> Mapping[str, Tensor]:
        """The declared layers' outputs by layer name, in the backbone's forward order, float32, each reduced as
        declared (:class:`Reduction`) (:attr:`Reads.LAYERS`)."""
        return self._read(Reads.LAYERS)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"inputs are read-only (tried to set '{name}')")


class ScoreInputs(_Inputs):
    """What :meth:`Method.score` sees: one batch's declared representations and ``num_classes``.

    Nothing else: no labels, no split name, no role, no seed. Every batch has the same size and mixes
    ID and OOD samples in a proportion drawn per batch (``oodbench.engine.mixing``), and is scored by
    a fresh method instance rebuilt from the fitted state, so a method can tell ID from OOD only by its
    own score.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # protocol probes (copy, display) get the usual answer
            raise AttributeError(name)
        raise UndeclaredRead(
            f"score() inputs have no '{name}': a method sees only the representations it declared "
            f"({', '.join(sorted(self._PUBLIC))}); labels and the split's identity are hidden by design"
        )


class FitInputs(_Inputs):
    """What :meth:`Method.fit` sees: the declared representations and labels of the ID split it fits on (the training
    split unless the method's :attr:`~oodbench.api.Method.fit_split` names another).

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

    @property
    def present_labels(self) -> Tensor:
        """The labels renumbered ``0..K'-1`` over the classes the split has, in class order: for detectors that
        fit one group per class and take the nearest (a set of ImageNet-1K's label space holds few of its classes)."""
        return self.labels.unique(return_inverse=True)[1]


@dataclass
class TrainingContext:
    """What :meth:`Method.train` gets: the classifier to fine-tune in place and the data.

    ``model`` is a copy of the base classifier on the engine's device (pixels in [0, 1] in,
    normalisation inside), in training mode unless the method switches it. Images are uint8
    ``N x H x W x C`` arrays in the backbone's format; :meth:`pixels` turns a batch of them into
    the model's input. ``backward_step(loss, optimizer)`` zeroes the gradients, back-propagates
    (with loss scaling when the engine trains in float16) and steps. ``forward_for(module, steps)`` is what a
    training of ``steps`` steps calls for its forward passes (compiled when long enough). ``scratch`` survives an
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
    #: ``forward_for(module, steps)``: what to call for the forward passes of a training of ``steps`` steps (the
    #: module itself, or compiled for the full batches where the engine compiles trainings that long)
    forward_for: Callable[[torch.nn.Module, int], Callable[..., Tensor]] = lambda module, steps: module
    on_images: Callable[[int], None] = lambda count: None

    def pixels(self, images: np.ndarray) -> Tensor:
        """A uint8 ``B x H x W x C`` batch as the model's float input ``B x C x H x W`` in [0, 1]."""
        return self.to_pixels(images)

    def progress(self, iterable: Iterable, desc: str, total: int | None = None, unit: str = "batch") -> Iterable:
        """The engine's progress display (bar on a terminal, periodic lines in a log)."""
        return self.progress_display(iterable, desc=f"{self.desc} {desc}", total=total, unit=unit)
