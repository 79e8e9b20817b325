"""ImageNet-1K networks through torchvision's weights API: ResNet-50, ViT-B/16 and Swin-T with their
``IMAGENET1K_V1`` weights, the torchvision checkpoints of OpenOOD v1.5's ImageNet-1K leaderboard.

Everything about a network's input comes from its weights' own declaration (``weights.transforms()``:
resize size, crop size, interpolation, mean and std), not from a fixed ImageNet recipe: Swin-T's
weights want a 232-pixel bicubic resize where the other two want 256 pixels, bilinear. The weights
download through ``weights.get_state_dict`` into ``$TORCH_HOME/hub/checkpoints`` under torchvision's
file name, whose hash prefix torchvision checks; a file of that name already there is used offline,
and ``--checkpoint FILE`` takes a torchvision weights file (torchvision's parameter names) directly.
Penultimate features are what the network's classification head reads (pooled for ResNet-50 and
Swin-T, the class token for ViT-B/16); the head is the ``fc`` every method reads. These networks are
only used with their published weights (``trainable=False``); their ID sets are those whose labels are
ImageNet-1K class indices (``label_space="imagenet-1k"``).
"""

from __future__ import annotations

from typing import Callable

import torchvision.models as tvm
from torch import nn

from oodbench.api import BackboneSpec, KnownCheckpoint, TorchvisionWeights
from oodbench.backbones._headless import Headless, renames

CITATIONS = {
    "resnet50": "He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition, CVPR 2016",
    "vit_b_16": "Dosovitskiy et al., An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale, ICLR 2021",
    "swin_t": "Liu et al., Swin Transformer: Hierarchical Vision Transformer using Shifted Windows, ICCV 2021",
}
LABEL_SPACE = "imagenet-1k"


def _builder(architecture: Callable[..., nn.Module], head: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, channels: int) -> nn.Module:
        if channels != 3:
            raise ValueError(f"{architecture.__name__} takes 3-channel images, not {channels}")
        return Headless(architecture(weights=None, num_classes=num_classes), head)
    return build


def _spec(name: str, architecture: Callable[..., nn.Module], weights, head: str, feature_dim: int,
          layers: dict[str, str] | None = None) -> BackboneSpec:
    transform = weights.transforms()
    accuracy = weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100
    return BackboneSpec(
        name=name, build=_builder(architecture, head), input_size=transform.crop_size[0], resize_size=transform.resize_size[0],
        interpolation=transform.interpolation.value, channels=3, mean=tuple(transform.mean), std=tuple(transform.std),
        feature_dim=feature_dim, trainable=False, state_renames=renames(head), layers=layers or {},
        checkpoints=(KnownCheckpoint(LABEL_SPACE, 0, TorchvisionWeights(str(weights)), expected_accuracy=accuracy, tolerance=0.02,
                                     accuracy_source=f"torchvision's {weights} metrics (ImageNet-1K validation)"),),
        description=f"torchvision's {architecture.__name__} with {weights} (ImageNet-1K, top-1 {accuracy:.3f})",
        citation=CITATIONS[architecture.__name__], origin="built-in",
    )


RESNET50 = _spec("resnet50", tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1, "fc", 2048,
                 {"layer1": "body.layer1", "layer2": "body.layer2", "layer3": "body.layer3", "last_map": "body.layer4"})
VIT_B_16 = _spec("vit-b-16", tvm.vit_b_16, tvm.ViT_B_16_Weights.IMAGENET1K_V1, "heads.head", 768)
SWIN_T = _spec("swin-t", tvm.swin_t, tvm.Swin_T_Weights.IMAGENET1K_V1, "head", 768)
