"""Deep nearest neighbours (Sun, Ming, Zhu & Li, ICML 2022).

Penultimate features are normalised to unit length, ``z = h / ||h||_2``; the outlier score is the
Euclidean distance from ``z`` to its ``k``-th nearest neighbour among the normalised features of
the ID **training** split (the paper's Algorithm 1 with alpha = 100%,
:class:`pytorch_ood.detector.KNN`). ``k`` follows the paper: 50 on CIFAR-10, 200 on CIFAR-100; under ``--protocol openood-v1.5``
OpenOOD's K = 50 on every benchmark, and its sweep {50, 100, 200, 500, 1000} for ``--tune``.
The paper's stronger numbers with contrastive (SupCon) training come from a different backbone,
not from the detector: oodbench scores the run's classifier like every other method.
"""

from dataclasses import dataclass

import torch
from pytorch_ood.detector import KNN as KNNDetector
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs


@dataclass(frozen=True)
class KnnParams:
    #: the neighbour whose distance is the score (the paper: 50 on CIFAR-10, 200 on CIFAR-100)
    k: int = 50


class KNN(Method):
    name = "knn"
    table_order = 110
    citation = "Sun, Ming, Zhu & Li, Out-of-Distribution Detection with Deep Nearest Neighbors, ICML 2022"
    summary = "distance to the k-th nearest normalised ID training feature"
    Params = KnnParams
    dataset_defaults = {"cifar100": {"k": 200}}
    protocol_defaults = {"openood-v1.5": {"k": 50}}
    #: OpenOOD's sweep of k
    search_space = {"k": (50, 100, 200, 500, 1000)}
    reads = frozenset({Reads.FEATURES})
    fits = True

    def fit(self, train: FitInputs) -> dict:
        if len(train.features) < self.params.k:
            raise ValueError(f"knn: k={self.params.k} exceeds the {len(train.features)} ID training samples; lower it with --param knn.k=N")
        return {"bank": torch.nn.functional.normalize(train.features.float().cpu(), dim=1)}

    def score(self, data: ScoreInputs) -> Tensor:
        bank = self.state["bank"]
        detector = KNNDetector(encoder=None, k=self.params.k).fit_features(bank, torch.zeros(len(bank), dtype=torch.long))
        return detector.predict_features(data.features.float().cpu()).float()
