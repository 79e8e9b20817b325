"""Any timm model by name: ``--backbone timm:<model>`` (``timm:convnext_tiny``, ``timm:resnet50.a1_in1k``),
an optional extra (``pip install 'oodbench[timm]'``).

The backbone is made from the model itself when first named: its preprocessing from timm's data config
of the model (input size, interpolation, mean, std, and the resize ``floor(size / crop_pct)`` before the
centre crop), its penultimate features from ``forward_head(pre_logits=True)`` (what the classifier
reads), its head the classifier timm names in the model's config. The weights are timm's pretrained
ones for the name (:class:`~oodbench.api.TimmWeights`); a model whose head has 1,000 classes classifies
ImageNet-1K's label space (``label_space="imagenet-1k"`` sets, e.g. ``openood-imagenet``). Models
whose preprocessing is not a centre crop, or with two heads (distilled ones), are refused with the
reason.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from oodbench.api import BackboneFamily, BackboneSpec, KnownCheckpoint, TimmWeights
from oodbench.backbones._headless import Headless, renames
from oodbench.errors import ConfigError

PREFIX = "timm:"


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("timm backbones need timm", "pip install 'oodbench[timm]'") from None
    return timm


def _pre_logits(body: nn.Module, x: Tensor) -> Tensor:
    return body.forward_head(body.forward_features(x), pre_logits=True)


def timm_backbone(model: str) -> BackboneSpec:
    """The backbone of timm model ``model`` (``name`` or ``name.tag``)."""
    timm = _timm()
    config = timm.models.get_pretrained_cfg(model)
    if config is None:
        raise ConfigError(f"--backbone {PREFIX}{model}: timm has no pretrained model of that name",
                          "see timm.list_models(pretrained=True)")
    probe = timm.create_model(model, pretrained=False)
    head = probe.default_cfg.get("classifier")
    if not isinstance(head, str):
        raise ConfigError(f"--backbone {PREFIX}{model}: the model has heads {head}, oodbench reads one", "choose a model with one head")
    data = timm.data.resolve_model_data_config(probe)
    if data.get("crop_mode", "center") != "center":
        raise ConfigError(f"--backbone {PREFIX}{model}: its preprocessing crops in mode '{data['crop_mode']}'",
                          "oodbench stores centre crops; choose a model whose data config uses crop_mode 'center'")
    channels, size = data["input_size"][0], data["input_size"][-1]

    def build(num_classes: int, in_channels: int) -> nn.Module:
        return Headless(timm.create_model(model, pretrained=False, num_classes=num_classes, in_chans=in_channels), head, _pre_logits)

    label_space = "imagenet-1k" if probe.num_classes == 1000 else None
    return BackboneSpec(
        name=f"{PREFIX}{model}", build=build, input_size=size, resize_size=math.floor(size / data["crop_pct"]),
        interpolation=data["interpolation"], channels=channels, mean=tuple(data["mean"]), std=tuple(data["std"]),
        feature_dim=probe.num_features, trainable=False, state_renames=renames(head),
        checkpoints=(KnownCheckpoint(label_space, 0, TimmWeights(model)),) if label_space else (),
        description=f"timm's {model} ({config.hf_hub_id or config.url or 'pretrained'})", citation="timm (Wightman, PyTorch Image Models)",
    )


TIMM = BackboneFamily(PREFIX, timm_backbone, "any timm model with its pretrained weights and data config (oodbench[timm])")
