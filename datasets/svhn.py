"""SVHN test split (Netzer et al. 2011) as an OOD set: ``test_32x32.mat`` from torchvision's download.

26,032 house-number crops of 32x32 pixels; the ``.mat`` file holds ``X`` (32 x 32 x 3 x N, uint8)
and ``y`` (labels 1-10, 10 meaning digit 0). Used as OOD, so labels are not kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torchvision.datasets as tvd

from oodbench.api import DatasetSpec
from oodbench.data.download import DownloadedFiles
from oodbench.data.source import ImageSet
from oodbench.errors import DataError

URL, FILENAME, MD5 = tvd.SVHN.split_list["test"]


def read_svhn_mat(path: Path) -> np.ndarray:
    """Images of an SVHN ``.mat`` file as ``N x 32 x 32 x 3`` uint8."""
    try:
        content = scipy.io.loadmat(path, variable_names=["X"])
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"cannot read SVHN file {path}: {error}", "delete it and let oodbench download it again") from None
    if "X" not in content or content["X"].ndim != 4:
        raise DataError(f"{path} has no 32 x 32 x 3 x N array 'X'", "delete it and let oodbench download it again")
    return np.ascontiguousarray(content["X"].transpose(3, 0, 1, 2)).astype(np.uint8)


def _read(root: Path) -> ImageSet:
    images = read_svhn_mat(root / FILENAME)
    return ImageSet.unlabelled(images)


SVHN = DatasetSpec(
    name="svhn",
    role="ood",
    source="svhn",
    splits={
        "test": DownloadedFiles(
            folder="svhn",
            required=(FILENAME,),
            download=lambda root: tvd.SVHN(str(root), split="test", download=True),
            reader=_read,
            url=URL,
            official_md5={FILENAME: MD5},
            official_count=26_032,
        )
    },
    description="SVHN test split, 26,032 street-view house numbers, 32x32",
    citation="Netzer et al., Reading Digits in Natural Images with Unsupervised Feature Learning, NIPS Workshop 2011",
)
