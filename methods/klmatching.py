"""KL matching (Hendrycks et al., ICML 2022).

For each class ``k`` a template posterior ``d_k`` is the mean softmax of the ID **training**
samples the network predicts as ``k``; the outlier score is ``min_k KL(softmax(f(x)) || d_k)``.
Fitted and scored by :class:`pytorch_ood.detector.KLMatching` on the shared logits; the fitted
state is the templates.
"""

from pytorch_ood.detector import KLMatching as KLMatchingDetector
from torch import Tensor
from torch.nn import Parameter

from oodbench.api import FitInputs, Method, Reads, ScoreInputs


class KLMatching(Method):
    name = "klmatching"
    table_order = 70
    citation = "Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt & Song, Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022"
    summary = "KL divergence to the nearest class-template posterior"
    reads = frozenset({Reads.LOGITS})
    fits = True

    def fit(self, train: FitInputs) -> dict:
        detector = KLMatchingDetector(model=None).fit_logits(train.logits, train.labels)
        return {"templates": {k: v.detach() for k, v in detector.dists.items()}}

    def score(self, data: ScoreInputs) -> Tensor:
        detector = KLMatchingDetector(model=None)
        for k, template in self.state["templates"].items():
            detector.dists[k] = Parameter(template, requires_grad=False)
        return detector.predict_logits(data.logits)
