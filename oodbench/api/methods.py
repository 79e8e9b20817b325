"""The method contract, part two: what a method declares (:class:`Capabilities`) and the
:class:`Method` base class a plugin subclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from oodbench.api.inputs import EVERY_LAYER, EXTRACTED, Classifier, FitInputs, Reads, Reduction, ScoreInputs, TrainingContext

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Capabilities:
    """What a configured method needs from the engine.

    ``fits`` means the method is fitted on an ID split (the training split unless the method names
    another, :attr:`Method.fit_split`), reading there the same representations it reads at scoring time. ``trains`` means the method fine-tunes the
    classifier (:meth:`Method.train`); it then reads its representations from the fine-tuned
    network. ``aux`` means training needs auxiliary outliers. ``attack`` says how adversarial
    evaluation reaches the method: ``"score"`` (:meth:`Method.attack_score` is its own score,
    differentiable in the input), ``"surrogate"`` (a declared differentiable stand-in for it), or
    ``None``: not attacked, and reported so. ``layers`` maps the intermediate layers the method reads
    (names the backbone exposes, :attr:`BackboneSpec.layers`, or ``"*"`` for all of them) to their
    :class:`Reduction`; declaring any adds :attr:`Reads.LAYERS` to ``reads``.
    """

    reads: frozenset[Reads]
    fits: bool = False
    trains: bool = False
    aux: bool = False
    attack: str | None = None
    layers: Mapping[str, Reduction] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layers = {str(name): Reduction(reduction) for name, reduction in dict(self.layers).items()}
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "reads", frozenset(Reads(r) for r in self.reads) | ({Reads.LAYERS} if layers else set()))
        if self.attack not in (None, "score", "surrogate"):
            raise ValueError(f"attack must be 'score', 'surrogate' or None, not {self.attack!r}")
        if EVERY_LAYER in layers and len(layers) > 1:
            raise ValueError(f"layers: '{EVERY_LAYER}' (every layer) cannot be combined with named layers, got {sorted(layers)}")

    def __hash__(self) -> int:
        return hash((self.reads, self.fits, self.trains, self.aux, self.attack, tuple(sorted(self.layers.items()))))

    @property
    def extracted(self) -> frozenset[Reads]:
        """The representations that come from the shared extraction pass."""
        return self.reads & EXTRACTED

    def describe(self, fit_split: str = "train") -> str:
        """What is read, whether the classifier is fine-tuned, and the ID split a fitted method fits on."""
        order = [r for r in Reads if r in self.reads]
        parts = ["+".join(r.value if r is not Reads.LAYERS else
                          "layers " + ",".join(f"{name}({reduction.value})" for name, reduction in self.layers.items())
                          for r in order)]
        if self.trains:
            parts.append("fine-tunes the classifier" + (" with aux outliers" if self.aux else ""))
        if self.fits:
            parts.append(f"fit on ID {fit_split}")
        return ", ".join(parts)


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
    only to that ID dataset), ``fit_split_under`` (the ID split the method fits on under a
    protocol, when not the training split) and ``search_space_under`` (the grid ``--tune`` searches
    under a protocol instead of ``search_space``; an empty grid: not tuned). The protocol ``clean`` is every method's own paper
    setting, fitted on ``fit_split``: the ID training split, or ``"val"`` for a method that must fit on ID data the
    network was not trained on (calibration); an ID set without that split does not run the method.
    """

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    dataset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    preset_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_aux: ClassVar[str | None] = None
    reads: ClassVar[frozenset[Reads]] = frozenset()
    #: intermediate layers read, by the backbone's layer name (or ``"*"``: all), with their :class:`Reduction`
    layers: ClassVar[Mapping[str, Reduction]] = {}
    fits: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    uses_aux: ClassVar[bool] = False
    #: :meth:`train` is data-parallel (``oodbench.models.distributed``): under ``torchrun`` every process
    #: takes part in the fine-tuning; otherwise the first process fine-tunes alone
    distributed: ClassVar[bool] = False
    #: how adversarial evaluation reaches the method (see :class:`Capabilities`); None: not attacked
    attacked_through: ClassVar[str | None] = None
    protocol_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: the ID split :meth:`fit` reads under the protocol ``clean`` (and every protocol ``fit_split_under`` leaves alone)
    fit_split: ClassVar[str] = "train"
    fit_split_under: ClassVar[Mapping[str, str]] = {}
    #: the values ``--tune`` tries per parameter (every combination), chosen on validation data
    search_space: ClassVar[Mapping[str, Sequence[Any]]] = {}
    search_space_under: ClassVar[Mapping[str, Mapping[str, Sequence[Any]]]] = {}
    #: scores use the batch they are computed in (batch statistics, test-time adaptation): evaluated on
    #: mixed batches like every method but not held to batch-independence, and marked in every table
    transductive: ClassVar[bool] = False
    #: rows of paper-style tables sort by this: the MIM paper's order for its baselines (10-100),
    #: other post-hoc methods after them, training-time methods from 200; unranked methods last
    table_order: ClassVar[int] = 1000

    def __init__(self, params: Any = None, state: Mapping[str, Any] | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.state = state

    @classmethod
    def fits_on(cls, protocol: str) -> str:
        """The ID split :meth:`fit` reads under ``protocol``."""
        return cls.fit_split_under.get(protocol, cls.fit_split)

    def capabilities(self) -> Capabilities:
        """What the engine must provide; override when it depends on the parameters."""
        return Capabilities(reads=self.reads, fits=self.fits, trains=self.trains, aux=self.uses_aux,
                            attack=self.attacked_through, layers=self.layers)

    def train(self, context: TrainingContext) -> dict:
        """Fine-tune ``context.model`` in place (only called when ``trains``); returns a summary."""
        raise NotImplementedError(f"{type(self).__name__} declares trains=True but does not implement train()")

    def training_images(self, n_id: int, n_aux: int) -> int:
        """Images :meth:`train` passes forward and backward, for the plan's cost estimate."""
        return int(getattr(self.params, "epochs", 1)) * n_id

    def fit(self, train: FitInputs) -> dict:
        """Fit on the ID split :attr:`fit_split` names (only called when ``fits``); returns the fitted state."""
        raise NotImplementedError(f"{type(self).__name__} declares fits=True but does not implement fit()")

    def score(self, data: ScoreInputs) -> Tensor:
        """Outlier scores of one batch of samples, shape ``N``; higher means more likely OOD. A batch mixes
        samples of every split the method is evaluated on, so each score must depend on its own sample
        only (the engine checks it), unless the method declares ``transductive``."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def attack_score(self, model: Classifier, pixels: Tensor) -> Tensor:
        """Outlier scores of a batch of pixels in [0, 1], differentiable in them (adversarial
        evaluation; only called when the capabilities declare ``attack``). Uses ``self.state``."""
        raise NotImplementedError(f"{type(self).__name__} declares an attack route but does not implement attack_score()")
