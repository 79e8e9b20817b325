"""Small VGG-style CNNs written here, for the demo and smoke presets: they train in seconds on a CPU."""

from __future__ import annotations

from torch import Tensor, nn

from oodbench.api import BackboneSpec, TrainingRecipe
from oodbench.backbones.wide_resnet import CIFAR_MEAN, CIFAR_STD


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A VGG-style CNN: ``len(widths)`` stages of two 3x3 conv-BN-ReLU blocks with 2x2 max-pooling
    between stages, global average pooling, and a linear classifier.

    Sized for seconds of CPU training (smoke preset) or for 8x8 digits (demo preset).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [_conv_block(c_in, width), _conv_block(width, width)]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def stage_outputs(stages: int) -> dict[str, str]:
    """Each stage's last block in :class:`SmallCNN`'s ``body`` (a max-pooling layer between stages): the last
    stage's is ``last_map``."""
    ends = [3 * i + 1 for i in range(stages)]
    return {**{f"stage{i + 1}": f"body.{end}" for i, end in enumerate(ends[:-1])}, "last_map": f"body.{ends[-1]}"}


CNN_SMALL = BackboneSpec(
    name="cnn-small",
    build=lambda num_classes, channels: SmallCNN(num_classes, channels, widths=(16, 32, 64)),
    input_size=32,
    channels=3,
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    feature_dim=64,
    recipe=TrainingRecipe(epochs=6, lr=0.05),
    layers=stage_outputs(3),
    description="six-layer CNN for the smoke preset: trains in seconds on a CPU",
)

CNN_DIGITS = BackboneSpec(
    name="cnn-digits",
    build=lambda num_classes, channels: SmallCNN(num_classes, channels, widths=(32, 64)),
    input_size=8,
    channels=1,
    mean=(0.25,),
    std=(0.35,),
    feature_dim=64,
    recipe=TrainingRecipe(epochs=30, lr=0.05, batch_size=64, crop_padding=1, flip=False),
    description="four-layer CNN for 8x8 grayscale digits (the demo preset)",
)
