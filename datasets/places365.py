"""Places365 (Zhou et al., TPAMI 2017) as an OOD set: the small (256x256) validation split,
36,500 scene images, as in the MIM paper. Downloaded by :class:`torchvision.datasets.Places365`
(``val_256.tar``, md5-checked) into ``<data root>/places365/val_256``.
"""

from __future__ import annotations

import torchvision.datasets as tvd

from oodbench.api import DatasetSpec
from oodbench.data.download import DownloadedFiles, image_folder_reader

ARCHIVE, MD5 = tvd.Places365._IMAGES_META[("val", True)]

PLACES365 = DatasetSpec(
    name="places365",
    role="ood",
    source="places365",
    splits={
        "test": DownloadedFiles(
            folder="places365",
            required=("val_256",),
            download=lambda root: tvd.Places365(str(root), split="val", small=True, download=True),
            reader=image_folder_reader("val_256"),
            url=tvd.Places365._BASE_URL + ARCHIVE,
            official_md5={ARCHIVE: MD5},
            official_count=36_500,
        )
    },
    description="Places365-Standard validation split, small images (36,500, 256x256)",
    citation="Zhou, Lapedriza, Khosla, Oliva & Torralba, Places: A 10 Million Image Database for Scene Recognition, TPAMI 2017",
)
