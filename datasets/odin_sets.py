"""The OOD sets released with ODIN (Liang et al., ICLR 2018): crops and resizes of TinyImageNet
and LSUN test images, 10,000 each, downloaded by pytorch-ood's dataset classes (md5-checked).

- ``tin-crop`` / ``tin-resize``: TinyImageNet, a 32x32 crop / the image downsampled to 32x32
- ``lsun-crop`` / ``lsun-resize``: LSUN, a crop (36x36 in the release) / downsampled to 32x32

Files live in ``<data root>/odin/`` in the layout of the released archives.
"""

from __future__ import annotations

from pytorch_ood.dataset.img import (
    LSUNCrop,
    LSUNResize,
    TinyImageNetCrop,
    TinyImageNetResize,
)

from oodbench.api import DatasetSpec
from oodbench.data.download import DownloadedFiles, image_folder_reader

ODIN_CITATION = "Liang, Li & Srikant, Enhancing The Reliability of Out-of-distribution Image Detection in Neural Networks, ICLR 2018"


def _odin_set(name: str, dataset: type, source: str, description: str) -> DatasetSpec:
    folder = dataset.base_folder.rstrip("/")
    return DatasetSpec(
        name=name,
        role="ood",
        source=source,
        splits={
            "test": DownloadedFiles(
                folder="odin",
                required=(folder,),
                download=lambda root: dataset(str(root), download=True),
                reader=image_folder_reader(folder),
                url=dataset.url,
                official_md5={dataset.filename: dataset.tgz_md5},
                official_count=10_000,
            )
        },
        description=description,
        citation=ODIN_CITATION,
    )


TIN_CROP = _odin_set("tin-crop", TinyImageNetCrop, "tinyimagenet", "TinyImageNet (crop), ODIN release: 10,000 random 32x32 crops")
TIN_RESIZE = _odin_set("tin-resize", TinyImageNetResize, "tinyimagenet", "TinyImageNet (resize), ODIN release: 10,000 images downsampled to 32x32")
LSUN_CROP = _odin_set("lsun-crop", LSUNCrop, "lsun", "LSUN (crop), ODIN release: 10,000 crops of LSUN test images")
LSUN_RESIZE = _odin_set("lsun-resize", LSUNResize, "lsun", "LSUN (resize), ODIN release: 10,000 LSUN test images downsampled to 32x32")
