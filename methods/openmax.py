"""OpenMax (Bendale & Boult, CVPR 2016).

Per class, the mean activation vector (MAV, here the mean logit vector of the class's ID **training**
samples) and a Weibull model of the largest distances of those samples to it (the ``tailsize`` largest:
the paper's Alg. 1, by :class:`pytorch_ood.detector.OpenMax`'s fit without libMR). A sample's ``alpha`` top
classes have their logits reduced by the Weibull probability that the sample lies beyond their MAV, ranked
weights ``(alpha - i + 1) / alpha``; the reduced mass becomes the logit of an extra "unknown" class, and its
softmax probability is the outlier score (the paper's Alg. 2). ``tailsize = 20`` and ``alpha = 10`` are
the paper's ImageNet settings (``alpha`` at most the number of classes); the distance is the paper's
``eucos`` (Euclidean / 200 + cosine), as pytorch-ood's weighted sum with ``euclid_weight = 1/201``
(the same up to the factor 200/201). A class without training samples (a set in a large label space) has
no model, and a sample's top classes without one are revised as if certainly beyond their MAV, as in pytorch-ood.

Alg. 2 is computed here, not by pytorch-ood's ``predict``: that one measures distances only to the classes some
sample of the batch predicts and takes 0 for the others, so a sample's score depended on its batch; here every
sample's distance to each of its top classes' MAVs is measured (pytorch-ood's distance and Weibull models), which
agrees with pytorch-ood on a batch in which every class is predicted. Fitted state: the classes' MAVs and Weibull
parameters.
"""

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_ood.detector.openmax.libnotmr import LibNotMR
from pytorch_ood.detector.openmax.numpy import OpenMax as NumpyOpenMax
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs


@dataclass(frozen=True)
class OpenmaxParams:
    #: how many of a class's largest distances to its MAV the Weibull model is fitted to
    tailsize: int = 20
    #: how many top classes are revised
    alpha: int = 10
    #: weight of the Euclidean distance (the cosine distance gets the rest); 1/201 is the paper's eucos
    euclid_weight: float = 1 / 201


class OpenMax(Method):
    name = "openmax"
    table_order = 175
    citation = "Bendale & Boult, Towards Open Set Deep Networks, CVPR 2016"
    summary = "probability of an unknown class made of logits revised by per-class Weibull models"
    Params = OpenmaxParams
    reads = frozenset({Reads.LOGITS})
    fits = True

    def _layer(self) -> NumpyOpenMax:
        return NumpyOpenMax(tailsize=self.params.tailsize, alpha=self.params.alpha, euclid_weight=self.params.euclid_weight)

    def fit(self, train: FitInputs) -> dict:
        layer = self._layer().fit(train.logits.float().cpu().numpy(), train.labels.cpu().numpy())
        classes = sorted(layer.centers)
        weibull = [[layer.distributions[c].min_val, layer.distributions[c].c, layer.distributions[c].scale] for c in classes]
        return {"classes": torch.tensor(classes), "centers": torch.from_numpy(np.stack([layer.centers[c] for c in classes])),
                "weibull": torch.tensor(weibull, dtype=torch.float64), "alpha": layer.alpha, "n_dims": layer.n_dims}

    def score(self, data: ScoreInputs) -> Tensor:
        layer = self._layer()
        logits = data.logits.float().cpu().numpy()
        alpha = self.state["alpha"]
        top = np.argsort(logits, axis=1)[:, -alpha:][:, ::-1]  # each sample's alpha top classes, largest first
        rows = np.arange(len(logits))[:, None]
        ranked = np.zeros_like(logits, dtype=np.float64)
        ranked[rows, top] = (alpha + 1 - np.arange(1, alpha + 1)) / alpha
        outside = np.ones_like(ranked)  # the Weibull probability of lying beyond a top class's MAV; 1 without a model
        for clazz, center, (min_val, c, scale) in zip(self.state["classes"].tolist(), self.state["centers"].cpu().numpy(),
                                                       self.state["weibull"].tolist(), strict=True):
            model = LibNotMR(tailsize=self.params.tailsize)
            model.min_val, model.c, model.scale = min_val, c, scale
            layer.centers[clazz] = center
            on_top = ranked[:, clazz] > 0
            outside[on_top, clazz] = model.w_score(layer._get_dists_to_center(clazz, logits[on_top]))
        kept = 1 - outside * ranked
        revised = np.concatenate([(logits * (1 - kept)).sum(axis=1, keepdims=True), logits * kept], axis=1)
        unknown = torch.from_numpy(np.minimum(revised, 709.0)).softmax(dim=1)[:, 0]  # pytorch-ood's cap against overflow
        return unknown.float().to(data.logits.device)
