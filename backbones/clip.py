"""CLIP as a zero-shot classifier: ``--backbone clip:<model>@<tag>`` (``clip:ViT-B-32@openai``), an optional extra
(``pip install 'oodbench[clip]'``, open_clip).

The network is open_clip's model of that architecture: its penultimate features are the L2-normalised image
embeddings, and its final layer is made from the ID set's class names (the dataset plugin's ``classes``): the
normalised text embeddings of the prompts "a photo of a <class>." times CLIP's logit scale, so the logits are CLIP's
zero-shot logits (Radford et al., ICML 2021) and every classifier-based method runs on them beside MCM. The input is
open_clip's preprocessing of the model (resize of the shorter side, centre crop, its mean and std). The weights are
open_clip's pretrained ones for the tag (:class:`~oodbench.api.OpenClipWeights`, downloaded once); without a tag
(``clip:ViT-S-32``) the architecture comes from open_clip's config and ``--checkpoint FILE`` gives the weights.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from oodbench.api import ANY_DATASET, BackboneFamily, BackboneSpec, KnownCheckpoint, OpenClipWeights
from oodbench.errors import ConfigError
from oodbench.models.weights import open_clip_module

PREFIX = "clip:"
#: the prompt of the CLIP and MCM papers' zero-shot classifiers
PROMPT = "a photo of a {}."


class ZeroShotClip(nn.Module):
    """open_clip's model with a final linear layer over the normalised image embeddings (set by :func:`class_head`)."""

    def __init__(self, clip: nn.Module, tokenizer, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.fc = nn.Linear(embedding_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return F.normalize(self.clip.encode_image(x), dim=-1)


def class_head(net: ZeroShotClip, classes: Sequence[str]) -> None:
    """The final layer from the class names: their prompts' normalised text embeddings, scaled as CLIP scales them."""
    if len(classes) != net.fc.out_features:
        raise ConfigError(f"the ID set names {len(classes)} classes and has {net.fc.out_features}", "fix the dataset's classes")
    device = net.fc.weight.device
    text = net.clip.encode_text(net.tokenizer([PROMPT.format(name.replace("_", " ")) for name in classes]).to(device))
    net.fc.weight.copy_(net.clip.logit_scale.exp() * F.normalize(text.float(), dim=-1))
    net.fc.bias.zero_()


def clip_backbone(name: str) -> BackboneSpec:
    """The zero-shot backbone of open_clip model ``MODEL`` or ``MODEL@TAG``."""
    open_clip = open_clip_module()
    model, _, tag = name.partition("@")
    if model not in open_clip.list_models():
        raise ConfigError(f"--backbone {PREFIX}{name}: open_clip has no model '{model}'", "see open_clip.list_models()")
    if tag and not open_clip.get_pretrained_cfg(model, tag):
        tags = [t for m, t in open_clip.list_pretrained() if m == model] or ["none"]
        raise ConfigError(f"--backbone {PREFIX}{name}: open_clip has no weights '{tag}' for {model}", f"its tags: {', '.join(tags)}")
    probe = open_clip.create_model(model, pretrained=None)
    preprocess = probe.visual.preprocess_cfg
    size = preprocess["size"] if isinstance(preprocess["size"], int) else preprocess["size"][0]
    dim = probe.text_projection.shape[1] if isinstance(probe.text_projection, Tensor) else probe.visual.output_dim

    def build(num_classes: int, in_channels: int) -> nn.Module:
        return ZeroShotClip(open_clip.create_model(model, pretrained=None), open_clip.get_tokenizer(model), dim, num_classes)

    return BackboneSpec(
        name=f"{PREFIX}{name}", build=build, input_size=size, resize_size=size, interpolation=preprocess["interpolation"],
        channels=3, mean=tuple(preprocess["mean"]), std=tuple(preprocess["std"]), feature_dim=dim, trainable=False,
        state_renames=(("", "clip."),), class_head=class_head,
        checkpoints=(KnownCheckpoint(ANY_DATASET, 0, OpenClipWeights(name)),) if tag else (),
        description=f"open_clip's {model} as a zero-shot classifier of the ID set's class names" + (f" ({tag} weights)" if tag else ""),
        citation="Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021 (open_clip)",
    )


CLIP = BackboneFamily(PREFIX, clip_backbone, "a CLIP model as a zero-shot classifier of the ID classes' names (oodbench[clip])")
