"""NAC-UE: neuron activation coverage (Liu, Tian, Li, Ma & Wang, ICLR 2024).

A neuron's state is its output ``z`` weighted by the gradient of the KL divergence between the uniform distribution
and the softmax output, squashed: ``s = sigmoid(alpha * z * dKL/dz)`` (the paper's Eq. 3; for a feature map, the
channel mean of ``z * dKL/dz``). The states of ID training images fill a histogram of ``bins`` intervals of ``[0, 1]``
per neuron; a state's coverage is ``min(count / o_star, 1)`` for the interval it falls in (Eq. 5-6), and a sample's ID
score is the mean coverage over a layer's neurons, summed over the layers (NAC-UE, Eq. 7); the outlier score is its
negative. Layers: every one the backbone exposes. As OpenOOD v1.5's NAC, the histograms are built from a class-balanced
subset of the training split (``fit_images``, drawn with the run's seed); ``bins = 50``, ``alpha = 100``, ``o_star = 50``
are :class:`pytorch_ood.detector.NACUE`'s shared defaults (OpenOOD tunes them per layer). The intervals are equal
(``spacing="uniform"``, the paper's); pytorch-ood spaces them geometrically, denser near 0 and 1
(``spacing="geometric"``, against which it is tested). Fitted state: the per-neuron interval counts of every layer.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from pytorch_ood.detector.nac import _bin_indices_geometric
from torch import Tensor

from oodbench.api import EVERY_LAYER, Capabilities, FitInputs, ImageBatches, Method, Reads, Reduction, ScoreInputs
from oodbench.models.layers import channel_means


@dataclass(frozen=True)
class NacParams:
    #: intervals of [0, 1] per neuron
    bins: int = 50
    #: the steepness of the sigmoid on z * dKL/dz
    alpha: float = 100.0
    #: the count at which an interval is fully covered
    o_star: int = 50
    #: ID training images the histograms are built from, class-balanced (0: all of them)
    fit_images: int = 1000
    #: equal intervals, or pytorch-ood's geometric ones
    spacing: Literal["uniform", "geometric"] = "uniform"


class NAC(Method):
    name = "nac"
    table_order = 185
    citation = "Liu, Tian, Li, Ma & Wang, Neuron Activation Coverage: Rethinking Out-of-distribution Detection and Generalization, ICLR 2024"
    summary = "how well the ID training states cover a sample's gradient-weighted neuron states, over every layer"
    Params = NacParams
    fits = True
    search_space = {"alpha": (10.0, 100.0, 1000.0), "o_star": (5, 50, 500)}

    def capabilities(self) -> Capabilities:
        # the layers' names come with their (small) channel means; the states need the images and the network
        return Capabilities(reads=frozenset({Reads.IMAGES}), fits=True, layers={EVERY_LAYER: Reduction.CHANNEL_MEAN})

    def _states(self, images: ImageBatches, pixels: Tensor, names: list[str]) -> dict[str, Tensor]:
        """Each layer's neuron states ``B x N`` and interval indices."""
        with torch.enable_grad(), images.precision():  # the network's weights are frozen: the graph starts at the pixels
            logits, outputs = images.model.forward_with_layers(pixels.detach().requires_grad_(True), names)
            log_probs = torch.log_softmax(logits[:, : images.model.num_classes].float(), dim=1)
            divergence = -log_probs.mean(dim=1).sum()  # KL(uniform || softmax) up to a constant, per sample summed
            grads = torch.autograd.grad(divergence, [outputs[name] for name in names])
        states = {name: torch.sigmoid(self.params.alpha * channel_means(outputs[name].detach() * grad.float()))
                  for name, grad in zip(names, grads, strict=True)}
        return {name: self._interval(state) for name, state in states.items()}

    def _interval(self, states: Tensor) -> Tensor:
        if self.params.spacing == "geometric":
            return _bin_indices_geometric(states, m=self.params.bins)
        return (states * self.params.bins).floor().clamp(0, self.params.bins - 1).long()

    def fit(self, train: FitInputs) -> dict:
        names = list(train.layers)
        chosen = _balanced(train.labels.cpu(), self.params.fit_images, train.seed)
        counts = {name: torch.zeros(train.layers[name].shape[1], self.params.bins, dtype=torch.long) for name in names}
        start = 0
        for pixels in train.progress(train.images, desc="nac states"):
            rows = chosen[(chosen >= start) & (chosen < start + len(pixels))] - start
            start += len(pixels)
            if len(rows):
                for name, intervals in self._states(train.images, pixels[rows.to(pixels.device)], names).items():
                    neurons = torch.arange(intervals.shape[1]) * self.params.bins
                    counts[name].view(-1).scatter_add_(0, (intervals.cpu() + neurons).flatten(), torch.ones(intervals.numel(), dtype=torch.long))
        return {"layers": names, "counts": counts}

    def score(self, data: ScoreInputs) -> Tensor:
        names, total = self.state["layers"], []
        for pixels in data.images:
            coverage = 0
            for name, intervals in self._states(data.images, pixels, names).items():
                counts = self.state["counts"][name].to(intervals.device)
                hits = counts.gather(1, intervals.T).T.float()
                coverage = coverage + (hits / self.params.o_star).clamp(max=1.0).mean(dim=1)
            total.append(-coverage)
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
