"""What every stage of a run shares: device and precision, the cache, data access, counters.

Stage functions receive an :class:`EngineContext` and the outputs of the tasks they depend on;
the objects defined here are those outputs (a :class:`Network`, an :class:`Extraction`, ...).
"""

from __future__ import annotations

import copy
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import numpy as np
import torch

from oodbench.api import KnownCheckpoint
from oodbench.config import RunConfig
from oodbench.data.source import SourceContext
from oodbench.engine.cache import ArtifactCache
from oodbench.engine.device import Compute, select_compute
from oodbench.engine.estimate import Throughput, device_label
from oodbench.hashing import DigestMemo, stable_hash
from oodbench.models.classifier import ImageClassifier

if TYPE_CHECKING:
    from oodbench.engine.sealed import SealedWorkers


@dataclass
class ForwardCounter:
    """Counts images passed through the classifier in this run (training, extraction, scoring)."""

    images: int = 0

    def __call__(self, count: int) -> None:
        self.images += count


@dataclass
class EngineContext:
    compute: Compute
    cache: ArtifactCache
    sources: SourceContext
    throughput: Throughput
    #: inference batch size asked for (``--batch-size``); None: measured per backbone before anything runs
    batch_size: int | None
    say: Callable[[str], None] = print
    forwarded: ForwardCounter = field(default_factory=ForwardCounter)
    notes: list[str] = field(default_factory=list)
    #: the inference batch size of each backbone of the plan (extraction and methods that read images)
    batch_sizes: dict[str, int] = field(default_factory=dict)
    #: the settings the context was made from (a cluster executor rebuilds it on its workers)
    config: RunConfig | None = None
    #: drawn per run (per worker process with Ray): the layout of the mixed scoring batches
    nonce: int = field(default_factory=lambda: secrets.randbits(63))
    #: the sandboxed workers of ``--sealed`` (None: plugin code runs in this process)
    sealed: "SealedWorkers | None" = None

    @classmethod
    def create(cls, device: str | None, precision: str | None, compile: bool | None, cache_dir: Path, data_root: Path,
               download: bool, batch_size: int | None = None, say: Callable[[str], None] = print,
               config: RunConfig | None = None) -> "EngineContext":
        """Device and precision, the artifact cache at ``cache_dir``, data access and the throughput
        store of this device."""
        compute = select_compute(device, precision, compile)
        cache = ArtifactCache(cache_dir)
        sources = SourceContext(data_root, download, DigestMemo(cache_dir / "digests.json"))
        ctx = cls(compute, cache, sources, Throughput(cache_dir / "throughput.json", device_label(compute)), batch_size, say,
                  config=config)
        cache.note = ctx.note
        return ctx

    @classmethod
    def for_run(cls, config: RunConfig, say: Callable[[str], None] = print) -> "EngineContext":
        """The context of a run with ``config`` (a cluster executor rebuilds it on its workers from the same);
        under ``--sealed`` its sandbox is attached by :func:`oodbench.engine.sealed.attach`."""
        return cls.create(config.device, config.precision, config.compile, config.cache_dir, config.data_root, config.download,
                          config.batch_size, say, config)

    @property
    def isolated(self) -> bool:
        """Whether plugin code runs sealed: part of the key of every stage that runs it (a fit or scores
        computed in this process are never taken for sealed ones)."""
        return self.config is not None and self.config.sealed

    def close(self) -> None:
        """Stop what the context started (the sandbox of ``--sealed``)."""
        if self.sealed is not None:
            self.sealed.close()

    def batch_for(self, network: "Network") -> int:
        """The inference batch size of ``network``'s backbone."""
        return self.batch_sizes[network.backbone]

    def note(self, text: str) -> None:
        """A remark that goes to the terminal and into the run's provenance."""
        self.notes.append(text)
        self.say(text)


@dataclass
class Network:
    """A classifier on the compute device, in eval mode with frozen weights, and its identity.

    ``key`` is the checkpoint hash that keys every downstream stage: the sha256 of a weights file,
    or the cache key of the training or fine-tuning stage that made it.
    """

    key: str
    origin: str
    model: ImageClassifier
    known: KnownCheckpoint | None = None
    info: dict = field(default_factory=dict)
    #: the backbone architecture it is built on (its inference batch size is the backbone's)
    backbone: str = ""

    def __post_init__(self) -> None:
        # frozen weights: an input-gradient step (ODIN, Mahalanobis with eps, an attack) computes
        # no weight gradients and leaves none on a network that other methods share
        self.model.requires_grad_(False)
        for parameter in self.model.parameters():
            parameter.grad = None  # a trained network's last gradients are no part of it
        self._pristine: ImageClassifier | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pristine": None}  # a copy travels without its reference copy

    @contextmanager
    def handed_to(self, who: str) -> Iterator[ImageClassifier]:
        """The network for plugin code (``who``, for the message): in eval mode, and verified afterwards
        against a reference copy made before the first hand-over. Parameters, buffers, the modules
        themselves, train mode and gradients are compared; a network that changed is replaced by the
        reference for everything after, and :class:`NetworkChanged` fails the plugin's task."""
        if self._pristine is None:
            self._pristine = copy.deepcopy(self.model).eval()
        self.model.eval()
        failure = None
        try:
            yield self.model
        except Exception as error:  # a changed network is the first thing to say (it may be why the code failed)
            failure = error
        changes = _changes(self.model, self._pristine)
        if changes:
            self.model = copy.deepcopy(self._pristine)
            raise NetworkChanged(f"{who} changed the network it was handed ({changes}): a method must leave the shared "
                                 "network as it found it (use a copy to train or adapt); it was restored for the methods "
                                 "after it") from failure
        if failure is not None:
            raise failure


class NetworkChanged(Exception):
    """Plugin code modified the shared network (its weights, buffers, modules, mode or gradients)."""


def _changes(model: torch.nn.Module, reference: torch.nn.Module) -> str:
    """What differs between ``model`` and ``reference`` ('' when nothing)."""
    found = []
    if any(module.training for module in model.modules()):
        found.append("left in training mode")
    if any(p.requires_grad or p.grad is not None for p in model.parameters()):
        found.append("gradients enabled on its weights")
    mine, theirs = model.state_dict(keep_vars=True), reference.state_dict(keep_vars=True)
    if mine.keys() != theirs.keys():
        found.append("modules replaced")
    else:
        changed = [name for name, tensor in mine.items()
                   if tensor.shape != theirs[name].shape or not torch.equal(tensor.detach(), theirs[name].detach())]
        if changed:
            found.append(f"{len(changed)} tensor(s) changed, e.g. {', '.join(changed[:3])}")
    return "; ".join(found)


@dataclass(frozen=True)
class Extraction:
    """Logits (``N x K``) and features (``N x D``) of one split, float32, and the network's top-1
    accuracy on it when the split is labelled; the intermediate layers the run's methods read, by
    :func:`~oodbench.models.layers.layer_key` (float32, memory-mapped)."""

    logits: np.ndarray
    features: np.ndarray
    accuracy: float | None
    layers: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class FittedState:
    """A method's fitted state, serialised (plain data only), and the seconds its fit took."""

    blob: bytes
    seconds: float


@dataclass(frozen=True)
class ScoredSplit:
    """Outlier scores of one split in its stored order, the seconds they took, and their cache key;
    for attacked inputs also the forward + backward passes the attack spent; what the
    batch-independence check found when they were computed (None: not checked)."""

    scores: np.ndarray
    seconds: float
    key: str
    passes: int = 0
    check: dict | None = None


@dataclass(frozen=True)
class ScoreRound:
    """The scores of every split of a scoring round, by split label."""

    splits: Mapping[str, ScoredSplit]


def scored(value: ScoredSplit | ScoreRound, label: str | tuple[str, ...]) -> ScoredSplit:
    """The scores of split ``label`` in a task's output: a round's, or a single split's (an attack's). A tuple
    of labels (full-spectrum ID: the test split and the covariate-shifted sets) gives their scores one after
    another, with the costs added, the first split's check and a key of all their keys."""
    if isinstance(label, tuple):
        parts = [scored(value, one) for one in label]
        return ScoredSplit(np.concatenate([p.scores for p in parts]), sum(p.seconds for p in parts),
                           stable_hash([p.key for p in parts]), sum(p.passes for p in parts), parts[0].check)
    return value.splits[label] if isinstance(value, ScoreRound) else value


@dataclass(frozen=True)
class Overlap:
    """The near-duplicate check of two splits: how many pairs match, a few of them as thumbnails, and
    the collection both were drawn from when they declare the same ``source`` (None when the sources
    differ or one is unknown: nothing is assumed across unknown sources)."""

    first: str
    second: str
    shared_source: str | None
    pairs: int
    threshold: int
    #: up to a few matched pairs: indices, Hamming distance and both images as base64 PNG
    examples: tuple[dict, ...] = ()
    seconds: float = 0.0

    @property
    def flagged(self) -> bool:
        return self.pairs > 0 or self.shared_source is not None

    def describe(self) -> str:
        facts = [f"{self.pairs} near-duplicate pair(s)"] + ([f"shared source '{self.shared_source}'"] if self.shared_source else [])
        return f"{self.first} ~ {self.second}: " + ", ".join(facts)


@dataclass(frozen=True)
class Tuned:
    """The hyperparameters ``--tune`` chose for a method on validation data: the values, every
    combination tried with its validation AUROC, and the validation splits."""

    chosen: dict
    grid: tuple[dict, ...]
    validation: dict
