"""OpenOOD v1.5's ResNet-18s (``openood/networks/resnet18_32x32.py`` and ``resnet18_224x224.py``), with
their parameter names, so OpenOOD's released checkpoints (``best.ckpt``: a bare state dict) load as
they are with ``--checkpoint``.

- ``resnet18-32x32``: the CIFAR network: a 3x3 stride-1 stem without max-pooling, four stages of two
  basic blocks (64-512 channels, 1x1 projection shortcuts named ``shortcut``), global average pooling,
  512-d features. Inputs 32x32, normalised with the statistics of the benchmark it was trained on
  (OpenOOD's ``normalization_dict``: CIFAR-10's, or CIFAR-100's for CIFAR-100).
- ``resnet18-224x224``: the ImageNet-200 network: torchvision's ResNet-18 (its names), inputs resized to
  256 and centre-cropped to 224, ImageNet statistics.

Without a checkpoint, oodbench trains them with OpenOOD's recipe (``configs/pipelines/train/baseline.yml``
and its trainer): SGD with Nesterov momentum 0.9, lr 0.1, weight decay 5e-4, cosine annealing stepped
per batch; CIFAR: 100 epochs, batch 128, random crop (padding 4) and flip; ImageNet-200: 90 epochs,
batch 256, random resized crop and flip. OpenOOD anneals to a floor of 1e-6 x lr where oodbench
anneals to 0, and ImageNet-200's random resized crop is taken of the stored 256-then-224 centre crop,
not of the original image: both are noted where a trained network's numbers are compared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock as TorchvisionBlock
from torchvision.models.resnet import ResNet

from oodbench.api import BackboneSpec, TrainingRecipe

CITATION = ("He, Zhang, Ren & Sun, Deep Residual Learning for Image Recognition, CVPR 2016; as OpenOOD v1.5 "
            "(Zhang et al., arXiv:2306.09301) defines and trains it")
#: OpenOOD's ``normalization_dict``
CIFAR10_STATISTICS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATISTICS = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
IMAGENET_STATISTICS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, and a 1x1 projection ``shortcut`` where the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18_32x32(nn.Module):
    """OpenOOD's CIFAR ResNet-18 (its parameter names); ``features`` are the 512 pooled channels."""

    def __init__(self, num_classes: int = 10, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        planes = [64, 128, 256, 512]
        for index, (width, stride) in enumerate(zip(planes, (1, 2, 2, 2), strict=True), start=1):
            before = planes[index - 2] if index > 1 else 64
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(before, width, stride), BasicBlock(width, width, 1)))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def features(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class ResNet18_224x224(ResNet):
    """torchvision's ResNet-18 (its parameter names), with ``features`` before ``fc``."""

    def __init__(self, num_classes: int = 1000, channels: int = 3) -> None:
        super().__init__(TorchvisionBlock, [2, 2, 2, 2], num_classes=num_classes)
        if channels != 3:
            self.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)

    def features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


#: each residual stage's output; the last one (after its ReLU, before pooling) is ``last_map``
RESNET_LAYERS = {"layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "last_map": "layer4"}

RESNET18_32 = BackboneSpec(
    name="resnet18-32x32",
    build=ResNet18_32x32,
    input_size=32,
    channels=3,
    mean=CIFAR10_STATISTICS[0],
    std=CIFAR10_STATISTICS[1],
    normalisation={"cifar100": CIFAR100_STATISTICS},
    feature_dim=512,
    recipe=TrainingRecipe(epochs=100, batch_size=128),
    layers=RESNET_LAYERS,
    description="OpenOOD v1.5's CIFAR ResNet-18 (11M parameters); loads its released checkpoints, or trained with its recipe",
    citation=CITATION,
)

RESNET18_224 = BackboneSpec(
    name="resnet18-224x224",
    build=ResNet18_224x224,
    input_size=224,
    resize_size=256,
    channels=3,
    mean=IMAGENET_STATISTICS[0],
    std=IMAGENET_STATISTICS[1],
    feature_dim=512,
    recipe=TrainingRecipe(epochs=90, batch_size=256, crop_padding=0, random_resized_crop=True),
    layers=RESNET_LAYERS,
    description="OpenOOD v1.5's ImageNet-200 ResNet-18 (torchvision's architecture); loads its released checkpoints, "
                "or trained with its recipe",
    citation=CITATION,
)
