"""Mahalanobis distance (Lee, Lee, Lee & Shin, NeurIPS 2018).

Class means ``mu_c`` and one shared covariance ``Sigma`` are fitted on penultimate features of the
ID **training** split; the outlier score is ``min_c (h - mu_c)^T Sigma^-1 (h - mu_c) / 2``
(:class:`pytorch_ood.detector.Mahalanobis`; its covariance is not divided by N, which scales all
distances alike and leaves every metric unchanged).

``eps > 0`` adds the paper's input preprocessing: one sign step of size ``eps`` (pixel units)
that reduces the distance, then the distance of the perturbed input
(:class:`pytorch_ood.detector.MahalanobisODIN`); the original tuned eps on the grid
{0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01}. The paper's logistic-regression ensemble over
layers, fitted on OOD test samples, is deliberately not implemented: nothing is fitted on OOD
test data.
"""

from dataclasses import dataclass

import torch
from pytorch_ood.detector import Mahalanobis as MahalanobisDetector
from pytorch_ood.detector import MahalanobisODIN
from torch import Tensor

from oodbench.api import Capabilities, Method, Reads, Representations


@dataclass(frozen=True)
class MahalanobisParams:
    #: input preprocessing step in pixel units; 0 disables it (and the extra gradient passes)
    eps: float = 0.0


class _LateEncoder:
    """The feature encoder handed to pytorch-ood, bound to the network only while scoring.

    It pickles without the network, so a fitted detector can be cached on its own.
    """

    def __init__(self) -> None:
        self.model = None

    def __call__(self, pixels: Tensor) -> Tensor:
        return self.model.features(pixels).float()

    def __getstate__(self) -> dict:
        return {"model": None}


class Mahalanobis(Method):
    name = "mahalanobis"
    citation = "Lee, Lee, Lee & Shin, A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks, NeurIPS 2018"
    summary = "distance to the closest class mean under a shared covariance"
    Params = MahalanobisParams

    def capabilities(self) -> Capabilities:
        reads = {Reads.FEATURES} | ({Reads.IMAGES} if self.params.eps > 0 else set())
        return Capabilities(reads=frozenset(reads), fits=True)

    def fit(self, train: Representations) -> None:
        features, labels = train.require("features"), train.require("labels")
        if self.params.eps > 0:
            self.encoder = _LateEncoder()
            self.detector = MahalanobisODIN(self.encoder, eps=self.params.eps, norm_std=None)
        else:
            self.detector = MahalanobisDetector(encoder=None)
        self.detector.fit_features(features, labels)

    def score(self, data: Representations) -> Tensor:
        if self.params.eps <= 0:
            return self.detector.predict_features(data.require("features"))
        images = data.require("images")
        self.encoder.model = images.model
        try:
            with images.precision():
                return torch.cat([self.detector.predict(batch).float() for batch in images])
        finally:
            self.encoder.model = None
