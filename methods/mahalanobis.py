"""Mahalanobis distance (Lee, Lee, Lee & Shin, NeurIPS 2018).

Class means ``mu_c`` and one shared covariance ``Sigma`` are fitted on penultimate features of the
ID **training** split (for the classes it has); the outlier score is ``min_c (h - mu_c)^T Sigma^-1 (h - mu_c) / 2``
(:class:`pytorch_ood.detector.Mahalanobis`; its covariance is not divided by N, which scales all
distances alike and leaves every metric unchanged).

``eps > 0`` adds the paper's input preprocessing: one sign step of size ``eps`` (pixel units)
that reduces the distance, then the distance of the perturbed input
(:class:`pytorch_ood.detector.MahalanobisODIN`); the original tuned eps on the grid
{0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01}. The paper's logistic-regression ensemble over
layers, fitted on OOD test samples, is deliberately not implemented: nothing is fitted on OOD
test data. Adversarial evaluation attacks the distance itself (re-expressed in torch).

Under ``--protocol openood-v1.5``: OpenOOD's MDS, without preprocessing and without a search.

Under ``--protocol mim-notebook``: fitted on the ID test split, with ``eps = 0.002`` stepped in
normalised input units as pytorch-ood 0.1.6 did (:mod:`oodbench.notebook`).
"""

from dataclasses import dataclass

import torch
from pytorch_ood.detector import Mahalanobis as MahalanobisDetector
from pytorch_ood.detector import MahalanobisODIN
from torch import Tensor

from oodbench.api import Capabilities, FitInputs, Method, Reads, ScoreInputs
from oodbench.notebook import EpsUnits, step_std

#: the fitted state: class means and the precision of the shared covariance
FITTED = ("mu", "precision")


@dataclass(frozen=True)
class MahalanobisParams:
    #: input preprocessing step; 0 disables it (and the extra gradient passes)
    eps: float = 0.0
    #: the units of eps: pixels in [0, 1], or normalised inputs (pytorch-ood 0.1.6)
    eps_units: EpsUnits = "pixels"


class Mahalanobis(Method):
    name = "mahalanobis"
    table_order = 30
    citation = "Lee, Lee, Lee & Shin, A Simple Unified Framework for Detecting Out-of-Distribution Samples and Adversarial Attacks, NeurIPS 2018"
    summary = "distance to the closest class mean under a shared covariance"
    Params = MahalanobisParams
    protocol_defaults = {"mim-notebook": {"eps": 0.002, "eps_units": "normalised"}}
    fit_split_under = {"mim-notebook": "test"}
    #: the paper's grid of input-preprocessing steps
    search_space = {"eps": (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)}
    search_space_under = {"openood-v1.5": {}}

    def capabilities(self) -> Capabilities:
        reads = {Reads.FEATURES} | ({Reads.IMAGES} if self.params.eps > 0 else set())
        return Capabilities(reads=frozenset(reads), fits=True, attack="score" if self.params.eps <= 0 else "surrogate")

    def fit(self, train: FitInputs) -> dict:
        detector = MahalanobisDetector(encoder=None).fit_features(train.features, train.present_labels)
        return {name: getattr(detector, name) for name in FITTED}

    def _restore(self, detector: MahalanobisDetector) -> MahalanobisDetector:
        for name in FITTED:
            setattr(detector, name, self.state[name])
        return detector

    def score(self, data: ScoreInputs) -> Tensor:
        if self.params.eps <= 0:
            return self._restore(MahalanobisDetector(encoder=None)).predict_features(data.features)
        images = data.images
        detector = MahalanobisODIN(lambda pixels: images.model.features(pixels).float(), eps=self.params.eps,
                                   norm_std=step_std(images.model, self.params.eps_units))
        self._restore(detector._base)  # pytorch-ood keeps the fitted Gaussian in the wrapped detector
        with images.precision():
            return torch.cat([detector.predict(batch).float() for batch in images])

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        """Half the squared distance to the closest class mean, in torch so that it has a gradient
        (with ``eps > 0`` a surrogate: the distance without the preprocessing step)."""
        centered = model.features(pixels).float()[:, None, :] - self.state["mu"][None]
        return 0.5 * ((centered @ self.state["precision"]) * centered).sum(dim=2).min(dim=1).values
