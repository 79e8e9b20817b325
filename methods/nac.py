"""NAC-UE: neuron activation coverage (Liu, Tian, Li, Ma & Wang, ICLR 2024).

A neuron's state is its output ``z`` weighted by the gradient of the KL divergence between the uniform distribution
and the softmax output, squashed: ``s = sigmoid(alpha * z * dKL/dz)`` (the paper's Eq. 3). The states of ID training
images fill a histogram of intervals of ``[0, 1]`` per neuron; a state's coverage is ``min(count / O, 1)`` for the
interval it falls in (Eq. 5-6), and a sample's ID score is the mean coverage over a layer's neurons, averaged over the
layers (NAC-UE, Eq. 7); the outlier score is its negative.

As the authors' code (``ood_coverage``, which OpenOOD v1.5 runs):

- ``features`` is the pooled penultimate layer (their ``avgpool``): the state of feature ``f`` is ``f * dKL/df``. A
  layer of the backbone's own (``block3``, ``layer2``, ...) is summed over its positions first, output and gradient
  apart: ``sum(z) * sum(dKL/dz)`` per channel (``pooling="sum"``; pytorch-ood's :class:`~pytorch_ood.detector.NACUE`
  takes the channel mean of ``z * dKL/dz`` instead, ``pooling="mean"``). Spatial sums make a map's states scale
  with its size, so every layer has its own ``alpha``.
- Each layer has its own ``O``, interval count ``M`` and ``alpha``, written ``name:O:M:alpha``. Their configs read
  only ``features`` by default (CIFAR-10 ``features:50:50:100``, CIFAR-100 ``alpha`` 50); their README's runs add
  three stages with settings tuned per network (ResNet-18 on CIFAR-10: ``layer3:100:500:1000``, ``layer2:5:50:0.001``,
  ``layer1:100:500:0.001``), given here with ``--param nac.layers=...``.
- Their ``M`` thresholds (``spacing="authors"``) are log-spaced from both ends towards 0.5, so the ``M - 1``
  intervals are narrowest around 0.5, where most states lie; ``"uniform"`` splits ``[0, 1]`` into ``M`` equal
  intervals; ``"geometric"`` is pytorch-ood's ``M`` intervals, narrowest near 0 and 1 (tested against it).
- The histograms are built from ``fit_images`` class-balanced training images (their ``valid_num``), drawn with the
  run's seed.

Fitted state: the per-neuron interval counts of every layer.
"""

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from pytorch_ood.detector.nac import _bin_indices_geometric
from torch import Tensor

from oodbench.api import Capabilities, FitInputs, ImageBatches, Method, Reads, Reduction, ScoreInputs
from oodbench.errors import ConfigError

#: the pooled penultimate layer, computed from the backbone's ``last_map``
FEATURES = "features"
LAST_MAP = "last_map"


class LayerSetting(NamedTuple):
    name: str
    o_star: float
    intervals_m: int
    alpha: float


@dataclass(frozen=True)
class NacParams:
    #: layers read, each ``name:O:M:alpha``; ``features`` is the pooled penultimate layer
    layers: tuple[str, ...] = ("features:50:50:100",)
    #: interval edges: the authors' (narrowest around 0.5), equal, or pytorch-ood's (narrowest near 0 and 1)
    spacing: Literal["authors", "uniform", "geometric"] = "authors"
    #: a map's state per channel: sum(z) * sum(dKL/dz) (the authors') or mean(z * dKL/dz) (pytorch-ood's)
    pooling: Literal["sum", "mean"] = "sum"
    #: ID training images the histograms are built from, class-balanced (0: all of them)
    fit_images: int = 1000


def parse_layers(entries: tuple[str, ...]) -> list[LayerSetting]:
    """The ``name:O:M:alpha`` entries of :attr:`NacParams.layers`."""
    settings = []
    for entry in entries:
        parts = entry.split(":")
        try:
            name, o_star, m, alpha = parts
            setting = LayerSetting(name, float(o_star), int(m), float(alpha))
        except ValueError:
            raise ConfigError(f"nac.layers: '{entry}' is not name:O:M:alpha",
                              "write e.g. nac.layers=features:50:50:100;block3:100:500:1000") from None
        if setting.intervals_m < 2 or setting.o_star <= 0:
            raise ConfigError(f"nac.layers: '{entry}' needs M >= 2 and O > 0", "write e.g. features:50:50:100")
        settings.append(setting)
    if not settings or len({s.name for s in settings}) != len(settings):
        raise ConfigError(f"nac.layers: {entries!r} must name each layer once", "write e.g. features:50:50:100")
    return settings


def authors_edges(m: int) -> Tensor:
    """The authors' ``m`` interval edges on ``[0, 1.2]``: ``log_1000`` of ``m // 2`` points evenly spaced on
    ``[1, sqrt(1000)]`` gives the lower half (0 to 0.5), mirrored for the upper half, the last edge raised by 0.01 and
    1.2 appended (``logspace`` in their ``coverage.py``)."""
    half = torch.linspace(1.0, math.sqrt(1e3), m // 2, dtype=torch.float64).log() / math.log(1e3)
    edges = torch.cat([half[:-1], (1.0 - half).flip(0)])
    edges[-1] += 1e-2
    return torch.cat([edges, torch.tensor([1.2], dtype=torch.float64)]).float()


class NAC(Method):
    name = "nac"
    table_order = 185
    citation = "Liu, Tian, Li, Ma & Wang, Neuron Activation Coverage: Rethinking Out-of-distribution Detection and Generalization, ICLR 2024"
    summary = "how well the ID training states cover a sample's gradient-weighted neuron states"
    Params = NacParams
    fits = True
    dataset_defaults = {"cifar100": {"layers": ("features:50:50:50",)}}
    # the authors' sweep for the features layer on CIFAR-10 and CIFAR-100 (O, M and alpha)
    search_space = {"layers": (("features:10:50:100",), ("features:50:50:100",), ("features:50:500:50",), ("features:50:50:1",))}

    def capabilities(self) -> Capabilities:
        # the layers' names come with their (small) channel means; the states need the images and the network
        names = {LAST_MAP if s.name == FEATURES else s.name for s in parse_layers(self.params.layers)}
        return Capabilities(reads=frozenset({Reads.IMAGES}), fits=True, layers=dict.fromkeys(names, Reduction.CHANNEL_MEAN))

    def _states(self, images: ImageBatches, pixels: Tensor) -> dict[str, Tensor]:
        """Each layer's interval indices ``B x N``."""
        settings = parse_layers(self.params.layers)
        names = sorted({LAST_MAP if s.name == FEATURES else s.name for s in settings})
        with torch.enable_grad(), images.precision():  # the network's weights are frozen: the graph starts at the pixels
            logits, outputs = images.model.forward_with_layers(pixels.detach().requires_grad_(True), names)
            log_probs = torch.log_softmax(logits[:, : images.model.num_classes].float(), dim=1)
            divergence = -log_probs.mean(dim=1).sum()  # KL(uniform || softmax) up to a constant, per sample summed
            grads = dict(zip(names, torch.autograd.grad(divergence, [outputs[name] for name in names]), strict=True))
        intervals = {}
        for setting in settings:
            source = LAST_MAP if setting.name == FEATURES else setting.name
            product = self._product(outputs[source].detach().float(), grads[source].float(), setting.name == FEATURES)
            intervals[setting.name] = self._interval(torch.sigmoid(setting.alpha * product), setting.intervals_m)
        return intervals

    def _product(self, output: Tensor, grad: Tensor, pooled: bool) -> Tensor:
        """``z * dKL/dz`` per neuron, ``B x N``; ``pooled``: of the global average of ``output``, ``f * dKL/df``."""
        if output.dim() <= 2:
            return output * grad
        output, grad = output.flatten(2), grad.flatten(2)
        if pooled:  # f = mean(z) and dKL/df = sum(dKL/dz) over the positions
            return output.mean(2) * grad.sum(2)
        if self.params.pooling == "mean":
            return (output * grad).mean(2)
        return output.sum(2) * grad.sum(2)

    def _interval(self, states: Tensor, m: int) -> Tensor:
        if self.params.spacing == "geometric":
            return _bin_indices_geometric(states, m=m)
        if self.params.spacing == "uniform":
            return (states * m).floor().clamp(0, m - 1).long()
        edges = authors_edges(m).to(states.device)
        return (torch.bucketize(states.contiguous(), edges, right=True) - 1).clamp(0, len(edges) - 2)

    def _interval_count(self, m: int) -> int:
        return len(authors_edges(m)) - 1 if self.params.spacing == "authors" else m

    def fit(self, train: FitInputs) -> dict:
        settings = parse_layers(self.params.layers)
        chosen = _balanced(train.labels.cpu(), self.params.fit_images, train.seed)
        counts: dict[str, Tensor] = {}
        start = 0
        for pixels in train.progress(train.images, desc="nac states"):
            rows = chosen[(chosen >= start) & (chosen < start + len(pixels))] - start
            start += len(pixels)
            if not len(rows):
                continue
            intervals = self._states(train.images, pixels[rows.to(pixels.device)])
            for setting in settings:
                held = intervals[setting.name].cpu()
                bins = self._interval_count(setting.intervals_m)
                table = counts.setdefault(setting.name, torch.zeros(held.shape[1], bins, dtype=torch.long))
                neurons = torch.arange(held.shape[1]) * bins
                table.view(-1).scatter_add_(0, (held + neurons).flatten(), torch.ones(held.numel(), dtype=torch.long))
        return {"counts": counts}

    def score(self, data: ScoreInputs) -> Tensor:
        settings, total = parse_layers(self.params.layers), []
        for pixels in data.images:
            intervals = self._states(data.images, pixels)
            coverage = 0
            for setting in settings:
                counts = self.state["counts"][setting.name].to(pixels.device)
                hits = counts.gather(1, intervals[setting.name].T).T.float()
                coverage = coverage + (hits / setting.o_star).clamp(max=1.0).mean(dim=1)
            total.append(-coverage / len(settings))
        return torch.cat(total)


def _balanced(labels: Tensor, images: int, seed: int) -> Tensor:
    """Sorted row indices of ``images`` training samples spread evenly over the classes (all rows for 0 or more)."""
    if images <= 0 or images >= len(labels):
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = max(1, images // len(classes))
    picked = [rows[torch.randperm(len(rows), generator=generator)[:per_class]]
              for rows in ((labels == clazz).nonzero().flatten() for clazz in classes)]
    return torch.cat(picked).sort().values
