"""KL matching (Hendrycks et al., ICML 2022).

For each class ``k`` a template posterior ``d_k`` is the mean softmax of the ID **training**
samples the network predicts as ``k``; the outlier score is ``min_k KL(softmax(f(x)) || d_k)``.
Fitted and scored by :class:`pytorch_ood.detector.KLMatching` on the shared logits.
"""

from pytorch_ood.detector import KLMatching as KLMatchingDetector
from torch import Tensor

from oodbench.api import Method, Reads, Representations


class KLMatching(Method):
    name = "klmatching"
    citation = "Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt & Song, Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022"
    summary = "KL divergence to the nearest class-template posterior"
    reads = frozenset({Reads.LOGITS})
    fits = True

    def fit(self, train: Representations) -> None:
        self.detector = KLMatchingDetector(model=None).fit_logits(train.require("logits"), train.require("labels"))

    def score(self, data: Representations) -> Tensor:
        return self.detector.predict_logits(data.require("logits"))
