"""The 300K Random Images (Hendrycks et al., ICLR 2019): auxiliary outliers for Outlier Exposure.

A cleaned subset of 80 Million Tiny Images (withdrawn) released with the Outlier Exposure code:
300,000 images of 32x32 as one ``.npy`` array (``N x 32 x 32 x 3`` uint8), downloaded by
:class:`pytorch_ood.dataset.img.TinyImages300k` (md5-checked) into ``<data root>/tinyimages300k``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pytorch_ood.dataset.img import TinyImages300k

from oodbench.api import DatasetSpec
from oodbench.data.download import DownloadedFiles
from oodbench.data.source import ImageSet
from oodbench.errors import DataError


def _read(root: Path) -> ImageSet:
    path = root / TinyImages300k.filename
    try:
        images = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path}: {error}", "delete it and let oodbench download it again") from None
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(f"{path} holds {images.dtype} {images.shape}, expected uint8 N x 32 x 32 x 3")
    return ImageSet.unlabelled(images)


TINYIMAGES300K = DatasetSpec(
    name="tinyimages300k",
    role="aux",
    source="80m-tiny-images",
    splits={
        "train": DownloadedFiles(
            folder="tinyimages300k",
            required=(TinyImages300k.filename,),
            download=lambda root: TinyImages300k(str(root), download=True),
            reader=_read,
            url=TinyImages300k.url,
            official_md5={TinyImages300k.filename: TinyImages300k.md5},
            official_count=300_000,
        )
    },
    description="300K Random Images: the usual replacement of 80M Tiny Images as Outlier Exposure's auxiliary set",
    citation="Hendrycks, Mazeika & Dietterich, Deep Anomaly Detection with Outlier Exposure, ICLR 2019",
)
