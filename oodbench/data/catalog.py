"""Catalog files: TOML lists of datasets that live on disk (format in docs/design.md).

```toml
[datasets.NAME]
role = "id" | "ood" | "aux" | "csid"
num_classes = 10                 # id only
classes = ["airplane", ...]      # optional; else sorted folder names
source = "cifar10"               # optional: the collection the images were drawn from
same_as = "cifar10"              # optional: the dataset a re-encoded copy stands for
near_ood = ["tinyimagenet"]      # optional, id only: OOD sets (names, stands-for names or sources) grouped as near-OOD
far_ood = ["mnist", "dtd"]       # optional, id only: the same for far-OOD
validation_ood = "my-val-ood"    # optional, id only: the OOD set --tune chooses on, against the 'val' split
label_space = "imagenet-1k"      # optional, id only: labels are ImageNet-1K class indices (published weights apply)
covariate_shift = ["my-v2"]      # optional, id only: covariate-shifted ID sets (role "csid"), ID under --full-spectrum
description = "..."
[datasets.NAME.splits.SPLIT]
path = "archive.zip"             # zip or folder, ImageFolder layout; relative to the catalog file
sha256 = "..."                   # zip, npz or list; verified before first use
count = 10000                    # expected number of images
# or, instead of path, an image list (OpenOOD's format, oodbench.data.imglist):
list = "benchmark_imglist/cifar10/test_tin.txt"   # "<image path> <label>" per line
images = "images_classic"        # the folder the list's paths are relative to
```

Any other key is an error naming the file, the entry and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from pathlib import Path

from oodbench.api import DatasetSpec
from oodbench.data.imglist import ImageListSource
from oodbench.data.source import (
    ImageFolderSource,
    NpzSource,
    Source,
    ZipImageFolderSource,
)
from oodbench.errors import ConfigError

CATALOG_ENV = "OODBENCH_CATALOG"
DATASET_KEYS = frozenset(
    {"role", "num_classes", "classes", "source", "same_as", "description", "default_ood", "near_ood", "far_ood", "splits",
     "validation_ood", "label_space", "covariate_shift"}
)
SPLIT_KEYS = frozenset({"path", "list", "images", "sha256", "count"})


def _check_keys(path: Path, where: str, entry: dict, allowed: frozenset[str]) -> None:
    """Fail on a key no catalog reader knows: a typo such as ``sha265`` would otherwise turn a check off."""
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(sorted(allowed))
            raise ConfigError(f"{path} {where}: unknown key '{key}'", f"{hint} (every key: docs/catalog.md)")


def catalog_paths_from_env() -> list[Path]:
    """Catalog files listed in ``OODBENCH_CATALOG`` (an ``os.pathsep``-separated list)."""
    value = os.environ.get(CATALOG_ENV, "")
    return [Path(p) for p in value.split(os.pathsep) if p.strip()]


def _split_source(path: Path, name: str, split: str, entry: dict, labelled: bool, classes) -> Source:
    _check_keys(path, f"[datasets.{name}.splits.{split}]", entry, SPLIT_KEYS)
    where = f"{path} [datasets.{name}.splits.{split}]"
    count = entry.get("count")
    if "list" in entry or "images" in entry:
        if "path" in entry or not ("list" in entry and "images" in entry):
            raise ConfigError(f"{where}: an image list needs 'list' and 'images' (and no 'path')",
                              "give the list file and the folder its paths are relative to, both relative to the catalog file")
        return ImageListSource(str((path.parent / entry["list"]).resolve()), str((path.parent / entry["images"]).resolve()),
                               f"put the files where {where} says, or correct its 'list' and 'images'", count, labelled,
                               entry.get("sha256"))
    if "path" not in entry:
        raise ConfigError(f"{where} has no 'path'", "give the archive or folder, relative to the catalog file")
    target = (path.parent / entry["path"]).resolve()
    if str(target).endswith(".zip"):
        return ZipImageFolderSource(target, entry.get("sha256"), count, labelled, classes, declared_in=str(path))
    if str(target).endswith(".npz"):
        return NpzSource(target, entry.get("sha256"))
    return ImageFolderSource(target, count, labelled, classes)


def load_catalog(path: str | os.PathLike) -> list[DatasetSpec]:
    """The datasets declared in one catalog file; raises :class:`ConfigError` naming the bad entry.

    An ID dataset without ``default_ood`` defaults to every OOD dataset of the same catalog.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"catalog file {path} not found", f"check the path given to --catalog or {CATALOG_ENV}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"catalog file {path} is not valid TOML: {error}") from None
    specs = []
    _check_keys(path, "(top level)", document, frozenset({"datasets"}))
    for name, entry in document.get("datasets", {}).items():
        _check_keys(path, f"[datasets.{name}]", entry, DATASET_KEYS)
        role = entry.get("role")
        if role not in {"id", "ood", "aux", "csid"}:
            raise ConfigError(f"{path} [datasets.{name}]: role must be 'id', 'ood', 'aux' or 'csid', got {role!r}")
        classes = tuple(entry["classes"]) if "classes" in entry else None
        num_classes = entry.get("num_classes")
        if role in ("id", "csid") and num_classes is None:
            raise ConfigError(f"{path} [datasets.{name}]: an ID or covariate-shifted ID dataset needs num_classes")
        if classes is not None and num_classes is not None and len(classes) != num_classes:
            raise ConfigError(f"{path} [datasets.{name}]: {len(classes)} classes listed but num_classes = {num_classes}")
        splits = {
            split: _split_source(path, name, split, split_entry, role in ("id", "csid"), classes)
            for split, split_entry in entry.get("splits", {}).items()
        }
        if not splits:
            raise ConfigError(f"{path} [datasets.{name}] declares no splits")
        if entry.get("validation_ood") and "val" not in splits:
            raise ConfigError(f"{path} [datasets.{name}] declares validation_ood but no 'val' split to tune against it",
                              f"add [datasets.{name}.splits.val] or drop validation_ood")
        specs.append(
            DatasetSpec(
                name=name,
                role=role,
                splits=splits,
                num_classes=num_classes,
                classes=classes,
                description=entry.get("description", ""),
                default_ood=tuple(entry.get("default_ood", ())),
                near_ood=tuple(entry.get("near_ood", ())),
                far_ood=tuple(entry.get("far_ood", ())),
                source=entry.get("source"),
                same_as=entry.get("same_as"),
                validation_ood=entry.get("validation_ood"),
                label_space=entry.get("label_space"),
                covariate_shift=tuple(entry.get("covariate_shift", ())),
                origin=f"catalog {path}",
            )
        )
    ood_names = tuple(spec.name for spec in specs if spec.role == "ood")
    return [
        dataclasses.replace(spec, default_ood=ood_names) if spec.role == "id" and not spec.default_ood else spec
        for spec in specs
    ]
