"""Maximum logit (Hendrycks et al., ICML 2022): outlier score ``-max_c f_c(x)``."""

from pytorch_ood.detector import MaxLogit as MaxLogitDetector
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs


class MaxLogit(Method):
    name = "maxlogit"
    table_order = 60
    citation = "Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt & Song, Scaling Out-of-Distribution Detection for Real-World Settings, ICML 2022"
    summary = "negative maximum logit"
    reads = frozenset({Reads.LOGITS})
    attacked_through = "score"

    def score(self, data: ScoreInputs) -> Tensor:
        return MaxLogitDetector.score(data.logits)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return MaxLogitDetector.score(model.class_logits(pixels).float())
