"""Multi-layer Mahalanobis: the feature ensemble of Lee, Lee, Lee & Shin (NeurIPS 2018).

At every layer the backbone exposes, the channel means of its output (the paper's average pooling of each block's
feature map) get class means and one shared covariance, fitted on the ID training split for the classes it has;
the layer's outlier score is half the squared Mahalanobis distance to the closest class mean, after the paper's input
preprocessing: one sign step of size ``eps`` (pixel units) that reduces that layer's distance, taken per layer (its
Eq. 4). The outlier score is the sum of the layers' scores (:class:`pytorch_ood.detector.MultiMahalanobis` without
preprocessing; with it, :class:`pytorch_ood.detector.MahalanobisODIN` per layer).

The paper weights the layers by a logistic regression fitted on validation OOD samples (or on adversarial ID
samples); here they are weighted alike, as OpenOOD v1.5's MDSEns does (``alpha_list: [1]``): fitting weights on
OOD data would put the OOD validation set inside the detector, which ``--tune`` keeps to choosing among a grid.
``eps = 0.0014``: OpenOOD's setting, from the paper's grid, which ``--tune`` searches. Fitted state: per layer, the
class means and the precision of the shared covariance.
"""

from dataclasses import dataclass

import torch
from pytorch_ood.detector import MahalanobisODIN, MultiMahalanobis
from torch import Tensor, nn

from oodbench.api import EVERY_LAYER, Capabilities, FitInputs, Method, Reads, Reduction, ScoreInputs
from oodbench.models.layers import channel_means
from oodbench.notebook import EpsUnits, step_std


@dataclass(frozen=True)
class MdsEnsParams:
    #: input preprocessing step per layer; 0 disables it (and the gradient passes it costs)
    eps: float = 0.0014
    #: the units of eps: pixels in [0, 1], or normalised inputs (as the paper's code stepped)
    eps_units: EpsUnits = "pixels"


class MdsEns(Method):
    name = "mdsens"
    table_order = 35
    citation = "Lee, Lee, Lee & Shin, A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks, NeurIPS 2018"
    summary = "Mahalanobis distances of every layer's channel means, each after its own input-preprocessing step, summed"
    Params = MdsEnsParams
    layers = {EVERY_LAYER: Reduction.CHANNEL_MEAN}
    fits = True
    #: the paper's grid of input-preprocessing steps
    search_space = {"eps": (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)}
    search_space_under = {"openood-v1.5": {}}

    def capabilities(self) -> Capabilities:
        reads = {Reads.IMAGES} if self.params.eps > 0 else set()
        return Capabilities(reads=frozenset(reads), fits=True, layers=self.layers)

    def fit(self, train: FitInputs) -> dict:
        names = list(train.layers)
        detector = MultiMahalanobis([nn.Identity()] * len(names))
        detector.fit_structured([train.layers[name].float() for name in names], train.present_labels)
        return {"layers": names, "mu": dict(zip(names, detector.mu, strict=True)),
                "precision": dict(zip(names, detector.precision, strict=True))}

    def score(self, data: ScoreInputs) -> Tensor:
        names = self.state["layers"]
        if self.params.eps <= 0:
            detector = MultiMahalanobis([nn.Identity()] * len(names))
            detector.mu = [self.state["mu"][name] for name in names]
            detector.precision = [self.state["precision"][name] for name in names]
            return detector.predict_structured([data.layers[name].float() for name in names])
        images, total = data.images, 0
        model = images.model
        for name in names:
            pooled = lambda pixels, name=name: channel_means(model.forward_with_layers(pixels, [name])[1][name])  # noqa: E731
            detector = MahalanobisODIN(pooled, eps=self.params.eps, norm_std=step_std(model, self.params.eps_units))
            # pytorch-ood keeps the fitted Gaussian in the wrapped detector
            detector._base.mu, detector._base.precision = self.state["mu"][name], self.state["precision"][name]
            with images.precision():
                total = total + torch.cat([detector.predict(batch).float() for batch in images])
        return total
