"""NECO: neural-collapse based detection (Ben Ammar, Belkhir, Popescu, Manzanera & Franchi, ICLR 2024).

Under neural collapse, ID features concentrate in the low-dimensional subspace their class means span, and OOD
features fall nearly orthogonal to it. Penultimate features ``h`` are standardised per dimension (mean and standard
deviation of the ID training features, ``z``) and projected on the first ``d`` principal components ``P`` of the
standardised training features; the confidence is ``||P z|| / ||z||`` (the paper's Eq. 6), times the maximum logit
for the transformer backbones the authors evaluate (``times_maxlogit``; their ResNet runs use the ratio alone). The
outlier score is its negative. ``d`` is a per-case choice in the paper; ``d = 0`` (the default) takes ``K - 1``, the
dimension of the simplex the class means of a collapsed network span, capped at the feature dimension (and the number
of training samples), and ``--tune``
searches fixed sizes. The authors' code divides by the raw feature norm for DeiT and Swin; this uses ``z`` for
every backbone. Fitted state: the standardisation and the ``d`` components.
"""

from dataclasses import dataclass

import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from oodbench.api import FitInputs, Method, Reads, ScoreInputs


@dataclass(frozen=True)
class NecoParams:
    #: principal components kept; 0 means the number of ID classes minus one
    d: int = 0
    #: multiply the ratio by the maximum logit (the authors' setting for ViT, DeiT and Swin)
    times_maxlogit: bool = False


class NECO(Method):
    name = "neco"
    table_order = 104
    citation = "Ben Ammar, Belkhir, Popescu, Manzanera & Franchi, NECO: NEural Collapse Based Out-of-distribution Detection, ICLR 2024"
    summary = "share of the standardised feature's norm inside the principal subspace of ID features"
    Params = NecoParams
    reads = frozenset({Reads.FEATURES, Reads.LOGITS})
    fits = True
    search_space = {"d": (0, 16, 32, 64, 128, 256)}

    def fit(self, train: FitInputs) -> dict:
        features = train.features.float().cpu().numpy()
        scaler = StandardScaler().fit(features)
        dims = min(self.params.d or train.num_classes - 1, *features.shape)  # PCA has at most min(N, D) components
        pca = PCA(n_components=dims).fit(scaler.transform(features))
        as_tensor = lambda values: torch.from_numpy(values).float()  # noqa: E731
        return {"mean": as_tensor(scaler.mean_), "scale": as_tensor(scaler.scale_), "center": as_tensor(pca.mean_),
                "components": as_tensor(pca.components_)}

    def score(self, data: ScoreInputs) -> Tensor:
        features = data.features.float()
        mean, scale, center, components = (self.state[name].to(features.device) for name in ("mean", "scale", "center", "components"))
        standardised = (features - mean) / scale
        ratio = ((standardised - center) @ components.T).norm(dim=1) / standardised.norm(dim=1)
        return -(ratio * data.logits.float().max(dim=1).values if self.params.times_maxlogit else ratio)
