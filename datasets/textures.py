"""Describable Textures (Cimpoi et al., CVPR 2014) as an OOD set: 5,640 images of 47 texture classes.

Downloaded by :class:`pytorch_ood.dataset.img.Textures` (``dtd-r1.0.1.tar.gz``, md5-checked) into
``<data root>/textures/dtd/images/<class>/*.jpg``; images of various sizes are resized (shorter
side) and center-cropped to the backbone's resolution.
"""

from __future__ import annotations

from pytorch_ood.dataset.img import Textures

from oodbench.api import DatasetSpec
from oodbench.data.download import DownloadedFiles, image_folder_reader

TEXTURES = DatasetSpec(
    name="textures",
    role="ood",
    source="dtd",
    splits={
        "test": DownloadedFiles(
            folder="textures",
            required=(Textures.base_folder.rstrip("/"),),
            download=lambda root: Textures(str(root), download=True),
            reader=image_folder_reader(Textures.base_folder),
            url=Textures.url,
            official_md5={Textures.filename: Textures.tgz_md5},
            official_count=5_640,
        )
    },
    description="Describable Textures Dataset (DTD), all 5,640 images",
    citation="Cimpoi, Maji, Kokkinos, Mohamed & Vedaldi, Describing Textures in the Wild, CVPR 2014",
)
