"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), downloaded by torchvision in their python-pickle format.

Files: ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``cifar-100-python/{train, test, meta}`` under ``<data root>/cifar``; torchvision's download
checks the archive's md5, and the extracted files are compared with torchvision's per-file md5
list. Default OOD sets: the seven of the MIM paper's table.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torchvision.datasets as tvd

from oodbench.api import DatasetSpec
from oodbench.data.download import DownloadedFiles
from oodbench.data.source import ImageSet
from oodbench.errors import DataError

MIM_OOD_SETS = ("tin-crop", "tin-resize", "svhn", "lsun-crop", "lsun-resize", "textures", "places365")
#: OpenOOD v1.5's grouping (by source): the other CIFAR and TinyImageNet are near-OOD; MNIST, SVHN,
#: Textures and Places365 far-OOD. LSUN, which OpenOOD v1.5 does not use, is a scene set like
#: Places365 and counted far.
FAR_OOD = ("mnist", "svhn", "dtd", "places365", "lsun")
CITATION = "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009"


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataError(f"cannot read CIFAR pickle {path}: {error}", "delete it and let oodbench download it again") from None


def _reader(base: str, files: list[str], label_key: str):
    def read(root: Path) -> ImageSet:
        images, labels = [], []
        for name in files:
            batch = _unpickle(root / base / name)
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(batch[label_key])
        return ImageSet(labels=np.asarray(labels, dtype=np.int64), array=np.concatenate(images))

    return read


def _source(dataset: type, base: str, files: list[str], md5: dict[str, str], label_key: str, train: bool) -> DownloadedFiles:
    return DownloadedFiles(
        folder="cifar",
        required=tuple(f"{base}/{name}" for name in files),
        download=lambda root: dataset(str(root), train=train, download=True),
        reader=_reader(base, files, label_key),
        url=dataset.url,
        official_md5={f"{base}/{name}": md5[name] for name in files},
        official_count=50_000 if train else 10_000,
    )


def _cifar(dataset: type, name: str, base: str, label_key: str, classes: tuple[str, ...], other: str) -> DatasetSpec:
    md5 = {entry[0]: entry[1] for entry in dataset.train_list + dataset.test_list}
    train_files = [entry[0] for entry in dataset.train_list]
    test_files = [entry[0] for entry in dataset.test_list]
    return DatasetSpec(
        name=name,
        role="id",
        splits={
            "train": _source(dataset, base, train_files, md5, label_key, train=True),
            "test": _source(dataset, base, test_files, md5, label_key, train=False),
        },
        num_classes=len(classes),
        classes=classes,
        description=f"{name.upper()}: 50,000 train / 10,000 test 32x32 images (torchvision download)",
        citation=CITATION,
        default_ood=MIM_OOD_SETS,
        near_ood=(other, "tinyimagenet"),
        far_ood=FAR_OOD,
        source=name,
    )


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple(
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm".split()
)

CIFAR10 = _cifar(tvd.CIFAR10, "cifar10", "cifar-10-batches-py", "labels", CIFAR10_CLASSES, "cifar100")
CIFAR100 = _cifar(tvd.CIFAR100, "cifar100", "cifar-100-python", "fine_labels", CIFAR100_CLASSES, "cifar10")
