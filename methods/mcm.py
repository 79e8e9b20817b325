"""MCM: maximum concept matching (Ming, Cai, Gu, Sun, Li & Li, NeurIPS 2022).

Zero-shot detection with a vision-language model: the cosine similarities of the image embedding with the text
embeddings of the ID class names ("concepts"), divided by a temperature ``tau``, go through a softmax; the outlier
score is minus the largest probability (the paper's Eq. 3, :class:`pytorch_ood.detector.MCM`). On a CLIP backbone
(``--backbone clip:ViT-B-32@openai``) the features are the image embeddings and the final layer's rows the class
names' text embeddings (``backbones/clip.py``), so nothing is fitted and no ID image is seen; on another backbone the
same score uses the final layer's rows as the class prototypes (a cosine-softmax). ``tau = 1``: the paper's.
"""

from dataclasses import dataclass

from pytorch_ood.detector import MCM as MCMDetector
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs


@dataclass(frozen=True)
class McmParams:
    #: the temperature the cosine similarities are divided by
    temperature: float = 1.0


class MCM(Method):
    name = "mcm"
    table_order = 180
    citation = "Ming, Cai, Gu, Sun, Li & Li, Delving into Out-of-Distribution Detection with Vision-Language Representations, NeurIPS 2022"
    summary = "maximum softmax of the cosine similarities of the image with the class names' text embeddings"
    Params = McmParams
    reads = frozenset({Reads.FEATURES, Reads.HEAD})

    def score(self, data: ScoreInputs) -> Tensor:
        detector = MCMDetector(encoder=None, text_embeddings=data.head.weight, temperature=self.params.temperature)
        return detector.predict_features(data.features)
