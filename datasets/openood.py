"""The four ID benchmarks of OpenOOD v1.5 (Zhang et al., 2023) with their near- and far-OOD sets,
read from OpenOOD's own data layout (:mod:`oodbench.data.imglist`).

Each benchmark ``B`` in ``cifar10``, ``cifar100``, ``imagenet200``, ``imagenet`` is registered as the
ID set ``openood-B`` (splits ``train``, ``val``, ``test`` from OpenOOD's lists), each of its OOD test
sets as ``openood-B-<set>`` (OpenOOD's name with ``-`` for ``_``; OpenOOD's per-benchmark lists: e.g. TinyImageNet filtered against
CIFAR-10 is not the one filtered against CIFAR-100), and its validation OOD set as
``openood-B-val-<set>``. The near/far grouping is OpenOOD's (``openood/evaluation_api/datasets.py``
at v1.5): CIFAR-10 near CIFAR-100 and TinyImageNet, far MNIST, SVHN, Textures and Places365 (and the
mirror for CIFAR-100); ImageNet-200 and ImageNet-1K near SSB-hard and NINCO, far iNaturalist,
Textures and OpenImage-O.

The covariate-shifted ID sets of full-spectrum evaluation (``--full-spectrum``) are registered as
``openood-B-<set>`` with role ``csid`` and the benchmark's classes: CIFAR-10-C for CIFAR-10 (OpenOOD's
evaluator lists it; CIFAR-100 has none), ImageNet-V2, -C and -R for ImageNet-200 (OpenOOD's 200-class
subsets) and for ImageNet-1K, which adds ImageNet-ES.

The files come from OpenOOD's Google Drive archives: with a clone of
https://github.com/Jingkang50/OpenOOD, ``python scripts/download/download.py --contents datasets
--datasets ood_v1.5 --save_dir DIR --dataset_mode benchmark`` downloads all of them into ``DIR``
(the run's ``--data-root``). OpenOOD publishes no checksums for them; a split's identity is its list
file's sha256 and the sizes of the images it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oodbench.api import DatasetSpec
from oodbench.data.imglist import ImageListSource

CITATION = ("Zhang, Yang, Wang, Wang, Li, Hendrycks, Li & Liu, OpenOOD v1.5: Enhanced Benchmark for "
            "Out-of-Distribution Detection, arXiv:2306.09301 (2023)")
#: OpenOOD's Google Drive file of each archive (its ``download_id_dict``)
DRIVE_IDS = {
    "benchmark_imglist": "1lI1j0_fDDvjIt9JlWAw09X8ks-yrR_H1", "cifar10": "1Co32RiiWe16lTaiOU6JMMnyUYS41IlO1",
    "cifar100": "1PGKheHUsf29leJPPGuXqzLBMwl8qMF8_", "tin": "1PZ-ixyx52U989IKsMA2OT-24fToTrelC",
    "mnist": "1CCHAGWqA1KJTFFswuF9cbhmB-j98Y1Sb", "svhn": "1DQfc11HOtB1nEwqS4pWUFp8vtQ3DczvI",
    "texture": "1OSz1m3hHfVWbRdmMwKbUzoU8Hg9UKcam", "places365": "1Ec-LRSTf6u5vEctKX9vRp9OA6tqnJ0Ay",
    "imagenet_1k": "1i1ipLDFARR-JZ9argXd2-0a6DXwVhXEj", "ssb_hard": "1PzkA-WGG8Z18h0ooL_pDdz9cO-DCIouE",
    "ninco": "1Z82cmvIB0eghTehxOGP5VTdLt7OD3nk6", "inaturalist": "1zfLfMvoUD0CUlKNnkk7LgxZZBnTBipdj",
    "openimage_o": "1VUFXnB_z70uHfdgJG2E_pjYOcEgqM7tE", "cifar10c": "170DU_ficWWmbh6O2wqELxK9jxRiGhlJH",
    "imagenet_v2": "1akg2IiE22HcbvTBpwXQoD7tgfPCdkoho", "imagenet_r": "1EzjMN2gq-bVV7lg-MEAdeuBuz-7jbGYU",
    "imagenet_c": "1JeXL9YH4BO8gCJ631c5BHbaSsl-lekHt", "imagenet_es": "1ATz11vKmPqyzfEaEDRaPTF9TXiC244sw",
}
CLASSIC, LARGESCALE = "images_classic", "images_largescale"


@dataclass(frozen=True)
class OODSet:
    """One OOD set of a benchmark: OpenOOD's name for it, its list, its image folder and archive, and
    the collection its images come from (hygiene groups sets of one source)."""

    name: str
    list_name: str
    image_dir: str
    archive: str
    source: str
    description: str
    count: int | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    num_classes: int
    #: a shared label space its labels index (ImageNet-1K's: published ImageNet weights apply)
    label_space: str | None
    image_dir: str
    archive: str
    source: str
    same_as: str | None
    near: tuple[OODSet, ...]
    far: tuple[OODSet, ...]
    validation: OODSet
    #: covariate-shifted ID sets (labelled with the benchmark's classes)
    csid: tuple[OODSet, ...] = ()
    description: str = field(default="")


def _cifar_sets(benchmark: str, other: str) -> tuple[tuple[OODSet, ...], tuple[OODSet, ...], OODSet]:
    tin_count = {"cifar10": 7_793, "cifar100": 6_526}[benchmark]
    near = (OODSet(other, f"test_{other}", CLASSIC, other, other, f"{other.upper()} test images"),
            OODSet("tin", "test_tin", CLASSIC, "tin", "tinyimagenet",
                   f"TinyImageNet images without classes that overlap {benchmark.upper()}", tin_count))
    far = (OODSet("mnist", "test_mnist", CLASSIC, "mnist", "mnist", "MNIST digits"),
           OODSet("svhn", "test_svhn", CLASSIC, "svhn", "svhn", "SVHN house numbers"),
           OODSet("texture", "test_texture", CLASSIC, "texture", "dtd", "Describable Textures"),
           OODSet("places365", "test_places365", CLASSIC, "places365", "places365", "Places365 scenes"))
    validation = OODSet("tin", "val_tin", CLASSIC, "tin", "tinyimagenet", "TinyImageNet validation OOD images")
    return near, far, validation


def _imagenet_sets() -> tuple[tuple[OODSet, ...], tuple[OODSet, ...], OODSet]:
    near = (OODSet("ssb_hard", "test_ssb_hard", LARGESCALE, "ssb_hard", "imagenet-21k", "SSB-hard (ImageNet-21K classes)"),
            OODSet("ninco", "test_ninco", LARGESCALE, "ninco", "ninco", "NINCO"))
    far = (OODSet("inaturalist", "test_inaturalist", LARGESCALE, "inaturalist", "inaturalist", "iNaturalist plants"),
           OODSet("textures", "test_textures", CLASSIC, "texture", "dtd", "Describable Textures"),
           OODSet("openimage_o", "test_openimage_o", LARGESCALE, "openimage_o", "openimages", "OpenImage-O"))
    validation = OODSet("openimage_o", "val_openimage_o", LARGESCALE, "openimage_o", "openimages",
                        "OpenImage-O validation OOD images")
    return near, far, validation


def _imagenet_csid(benchmark: str, suffixes: tuple[str, ...]) -> tuple[OODSet, ...]:
    names = {"v2": "ImageNet-V2", "c": "ImageNet-C", "r": "ImageNet-R", "es": "ImageNet-ES"}
    return tuple(OODSet(f"imagenet_{s}", f"test_{benchmark}_{s}", LARGESCALE, f"imagenet_{s}", f"imagenet-{s}",
                        f"{names[s]} ({benchmark} classes)") for s in suffixes)


BENCHMARKS = (
    Benchmark("cifar10", 10, None, CLASSIC, "cifar10", "cifar10", "cifar10", *_cifar_sets("cifar10", "cifar100"),
              csid=(OODSet("cifar10c", "test_cifar10c", CLASSIC, "cifar10c", "cifar10-c", "CIFAR-10-C corrupted test images"),),
              description="CIFAR-10 (train, val and test lists of OpenOOD v1.5)"),
    Benchmark("cifar100", 100, None, CLASSIC, "cifar100", "cifar100", "cifar100", *_cifar_sets("cifar100", "cifar10"),
              description="CIFAR-100 (train, val and test lists of OpenOOD v1.5)"),
    Benchmark("imagenet200", 200, None, LARGESCALE, "imagenet_1k", "imagenet", None, *_imagenet_sets(),
              csid=_imagenet_csid("imagenet200", ("v2", "c", "r")),
              description="ImageNet-200: 200 ImageNet-1K classes (lists of OpenOOD v1.5)"),
    Benchmark("imagenet", 1000, "imagenet-1k", LARGESCALE, "imagenet_1k", "imagenet", None, *_imagenet_sets(),
              csid=_imagenet_csid("imagenet", ("v2", "c", "r", "es")),
              description="ImageNet-1K (lists of OpenOOD v1.5)"),
)


def how_to_get(archive: str) -> str:
    """Where a missing file of an OpenOOD archive comes from."""
    return (f"unpack OpenOOD's archives '{archive}' (https://drive.google.com/uc?id={DRIVE_IDS[archive]}) and "
            f"'benchmark_imglist' (https://drive.google.com/uc?id={DRIVE_IDS['benchmark_imglist']}) into DIR, or download all "
            "of OpenOOD v1.5 with python scripts/download/download.py --contents datasets --datasets ood_v1.5 --save_dir DIR "
            "--dataset_mode benchmark in a clone of https://github.com/Jingkang50/OpenOOD")


def _ood_spec(benchmark: Benchmark, ood: OODSet, label: str) -> DatasetSpec:
    source = ImageListSource(f"benchmark_imglist/{benchmark.name}/{ood.list_name}.txt", ood.image_dir, how_to_get(ood.archive),
                             ood.count, labelled=False)
    return DatasetSpec(name=label, role="ood", splits={"test": source}, source=ood.source, citation=CITATION,
                       description=f"{ood.description}, as OpenOOD v1.5 lists it for {benchmark.name}")


def _csid_spec(benchmark: Benchmark, shifted: OODSet, label: str) -> DatasetSpec:
    source = ImageListSource(f"benchmark_imglist/{benchmark.name}/{shifted.list_name}.txt", shifted.image_dir,
                             how_to_get(shifted.archive))
    return DatasetSpec(name=label, role="csid", splits={"test": source}, num_classes=benchmark.num_classes, source=shifted.source,
                       citation=CITATION, description=f"{shifted.description}, covariate-shifted ID of OpenOOD v1.5's {benchmark.name}")


def _specs(benchmark: Benchmark) -> list[DatasetSpec]:
    prefix = f"openood-{benchmark.name}"
    csid = [f"{prefix}-{shifted.name.replace('_', '-')}" for shifted in benchmark.csid]
    near = [f"{prefix}-{ood.name.replace('_', '-')}" for ood in benchmark.near]
    far = [f"{prefix}-{ood.name.replace('_', '-')}" for ood in benchmark.far]
    lists = {split: ImageListSource(f"benchmark_imglist/{benchmark.name}/{split}_{benchmark.name}.txt", benchmark.image_dir,
                                    how_to_get(benchmark.archive)) for split in ("train", "val", "test")}
    validation = f"{prefix}-val-{benchmark.validation.name.replace('_', '-')}"
    specs = [DatasetSpec(name=prefix, role="id", splits=lists, num_classes=benchmark.num_classes, citation=CITATION,
                         description=benchmark.description, default_ood=(*near, *far), near_ood=tuple(near), far_ood=tuple(far),
                         source=benchmark.source, same_as=benchmark.same_as, validation_ood=validation,
                         label_space=benchmark.label_space, covariate_shift=tuple(csid))]
    specs += [_csid_spec(benchmark, shifted, label) for shifted, label in zip(benchmark.csid, csid, strict=True)]
    specs += [_ood_spec(benchmark, ood, label) for ood, label in zip((*benchmark.near, *benchmark.far), (*near, *far), strict=True)]
    specs.append(_ood_spec(benchmark, benchmark.validation, validation))
    return specs


OPENOOD_V15 = [spec for benchmark in BENCHMARKS for spec in _specs(benchmark)]
