"""GradNorm (Huang, Geng & Li, NeurIPS 2021).

The confidence is the L1 norm of the gradient, with respect to the last layer's weights, of the
cross-entropy between the softmax ``p = softmax(f(x) / T)`` and the uniform distribution (the paper's Eq. 2
and 3). For the last layer it has a closed form, computed here from the penultimate features ``h`` without a
backward pass: the gradient is the outer product ``(p - 1/K) h^T / T``, so its L1 norm is
``(1/T) sum_k |p_k - 1/K| * sum_j |h_j|``; the outlier score is its negative. It equals what
:class:`pytorch_ood.detector.GradNorm` computes by back-propagation through the last layer (tested), and
is OpenOOD v1.5's score divided by ``K`` (OpenOOD's loss sums over the classes), a constant factor that
leaves every metric unchanged. ``T = 1``: the paper's setting. Nothing is fitted.
"""

from dataclasses import dataclass

from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs


@dataclass(frozen=True)
class GradnormParams:
    #: temperature T of the softmax
    temperature: float = 1.0


class GradNorm(Method):
    name = "gradnorm"
    table_order = 155
    citation = "Huang, Geng & Li, On the Importance of Gradients for Detecting Distributional Shifts in the Wild, NeurIPS 2021"
    summary = "L1 norm of the last layer's gradient of the KL divergence to the uniform distribution"
    Params = GradnormParams
    reads = frozenset({Reads.LOGITS, Reads.FEATURES})

    def score(self, data: ScoreInputs) -> Tensor:
        t = self.params.temperature
        p = (data.logits.float() / t).softmax(dim=1)
        return -(p - 1 / data.num_classes).abs().sum(dim=1) * data.features.float().abs().sum(dim=1) / t
