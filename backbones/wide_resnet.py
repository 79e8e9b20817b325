"""Wide ResNets (pytorch-ood's :class:`pytorch_ood.model.WideResNet`): the papers' WRN-40-2 and a
CPU-sized WRN-16-2 trained by oodbench.

WRN-40-2 checkpoints come from pytorch-ood's model registry. Seed 0 is the third-party
baseline the MIM paper used (``WideResNet(pretrained="cifar10-pt")`` in pytorch-ood 0.1, the
Outlier Exposure / Energy baseline, epoch 99); seeds 1 and 2 are pytorch-ood's own ``/s1``
and ``/s2`` runs. Expected accuracies: the OE repository logs (test error 5.16% on CIFAR-10,
24.04% on CIFAR-100) and pytorch-ood's registry metrics.
"""

from __future__ import annotations

from pytorch_ood.model import WideResNet

from oodbench.api import BackboneSpec, KnownCheckpoint, PytorchOodWeights, TrainingRecipe

#: CIFAR normalisation of the OE / Energy / pytorch-ood WRN checkpoints (pixel values in [0, 1]).
CIFAR_MEAN = tuple(v / 255 for v in (125.3, 123.0, 113.9))
CIFAR_STD = tuple(v / 255 for v in (63.0, 62.1, 66.7))

WRN_CITATION = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016"
OE_LOGS = "Outlier Exposure repository test logs (baseline WRN-40-2)"
POOD_METRICS = "pytorch-ood model registry metrics (final accuracy)"


def _wrn(depth: int, widen: int, drop: float):
    def build(num_classes: int, channels: int) -> WideResNet:
        return WideResNet(num_classes, depth=depth, widen_factor=widen, drop_rate=drop, in_channels=channels)

    return build


#: each residual group's output, and the last feature map (after the final BN-ReLU, before pooling)
WRN_LAYERS = {"block1": "block1", "block2": "block2", "block3": "block3", "last_map": "relu"}


def _seeded(dataset: str, base_accuracy: float, seeded: dict[int, float]) -> tuple[KnownCheckpoint, ...]:
    entries = [KnownCheckpoint(dataset, 0, PytorchOodWeights(f"wrn-40-2/{dataset}/crossentropy"), base_accuracy, 0.01, OE_LOGS)]
    entries += [
        KnownCheckpoint(dataset, seed, PytorchOodWeights(f"wrn-40-2/{dataset}/crossentropy/s{seed}"), acc, 0.01, POOD_METRICS)
        for seed, acc in seeded.items()
    ]
    return tuple(entries)


WRN_40_2 = BackboneSpec(
    name="wrn-40-2",
    build=_wrn(40, 2, 0.3),
    input_size=32,
    channels=3,
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    feature_dim=128,
    checkpoints=_seeded("cifar10", 0.9484, {1: 0.9480, 2: 0.9484}) + _seeded("cifar100", 0.7596, {1: 0.7570, 2: 0.7611}),
    recipe=TrainingRecipe(epochs=100),
    layers=WRN_LAYERS,
    description="Wide ResNet 40-2 (dropout 0.3), the backbone of the MIM, OE and Energy papers; pre-trained CIFAR weights via pytorch-ood",
    citation=WRN_CITATION,
)

WRN_16_2 = BackboneSpec(
    name="wrn-16-2",
    build=_wrn(16, 2, 0.0),
    input_size=32,
    channels=3,
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    feature_dim=128,
    recipe=TrainingRecipe(epochs=25, warmup_epochs=1.0),
    layers=WRN_LAYERS,
    description="Wide ResNet 16-2: CPU-sized (0.7M parameters, 128-d features like WRN-40-2), trained by oodbench",
    citation=WRN_CITATION,
)
