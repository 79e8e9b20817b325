"""Architectures written here: small CNNs for the demo and smoke presets.

The Wide ResNets come from pytorch-ood (:class:`pytorch_ood.model.WideResNet`), which already has
the ``features(x)`` / ``fc`` interface the engine uses.
"""

from __future__ import annotations

from torch import Tensor, nn


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
