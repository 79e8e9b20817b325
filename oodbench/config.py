"""Run configuration: presets (named defaults) and the resolved :class:`RunConfig`.

Presets are named sets of defaults for a run. A preset only fills defaults; every value can be
overridden on the command line.

- ``demo``: what a bare ``oodbench run`` does: scikit-learn's 8x8 digits (classes 0-5 ID, 6-9
  near-OOD), photo patches and noise as far-OOD, a tiny CNN trained on the spot. No network.
- ``smoke``: a six-layer CNN and a few hundred images: seconds. For tests and trying a plugin.
- ``quick``: a CPU-sized run: WRN-16-2 trained by oodbench when no checkpoint is given, 2,000
  test images per set, 2 epochs of Outlier Exposure instead of 10. Tens of minutes on 2 cores.
- ``paper``: the published setting: WRN-40-2 with pytorch-ood's pre-trained CIFAR weights, full
  test sets, original hyperparameters, the 300K Random Images as auxiliary outliers. Meant for a GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from oodbench.errors import UnknownNameError


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    backbone: str
    #: use the backbone's published checkpoint for (ID dataset, seed) when there is one
    pretrained: bool
    #: train the backbone with its recipe when no checkpoint is given or known
    train: bool
    #: epochs of backbone training (None: the backbone recipe's own)
    epochs: int | None = None
    #: images per test split (ID test and each OOD set); None = all
    limit: int | None = None
    #: images of the ID training split (backbone training and fitting); None = all
    train_limit: int | None = None
    #: default ID dataset when --id is not given
    id_dataset: str | None = None
    batch_size: int = 256
    #: default auxiliary outlier set of training-time methods (--aux)
    aux: str | None = None
    #: parameter defaults of methods in this preset, e.g. fewer fine-tuning epochs (--param wins)
    method_params: dict[str, dict[str, str]] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("demo", "digits, a tiny CNN trained on the spot, no network needed (under 2 minutes)",
               backbone="cnn-digits", pretrained=False, train=True, id_dataset="digits"),
        Preset("smoke", "a tiny CNN and a few hundred images: seconds",
               backbone="cnn-small", pretrained=False, train=True, epochs=6, limit=300, train_limit=2000,
               method_params={"oe": {"epochs": "1"}, "bal": {"epochs": "2"}}),
        Preset("quick", "CPU-sized: WRN-16-2 trained by oodbench, 2,000 test images per set",
               backbone="wrn-16-2", pretrained=False, train=True, limit=2000,
               method_params={"oe": {"epochs": "2"}}),
        Preset("paper", "published setting: WRN-40-2, pytorch-ood's pre-trained weights, full test sets",
               backbone="wrn-40-2", pretrained=True, train=False, aux="tinyimages300k"),
    )
}


def get_preset(name: str) -> Preset:
    from oodbench.registry import suggest

    if name not in PRESETS:
        raise UnknownNameError(f"unknown preset '{name}'", suggest(name, PRESETS))
    return PRESETS[name]


def default_home() -> Path:
    """``OODBENCH_HOME`` (default ``~/.cache/oodbench``): downloads and the artifact cache live here."""
    return Path(os.environ.get("OODBENCH_HOME", Path.home() / ".cache" / "oodbench"))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, after presets and command-line values are merged."""

    preset: str
    id_dataset: str
    ood: tuple[str, ...]
    methods: tuple[str, ...]
    backbone: str
    seeds: tuple[int, ...] = (0,)
    checkpoint: str | None = None
    pretrained: bool = False
    train: bool = True
    epochs: int | None = None
    limit: int | None = None
    train_limit: int | None = None
    batch_size: int = 256
    device: str = "auto"
    precision: str = "auto"
    compile: bool = True
    params: dict[str, dict[str, str]] = field(default_factory=dict)
    #: label -> (method, parameter overrides): a method run again under another name and parameters
    variants: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    aux: str | None = None
    results_dir: Path = Path("results")
    cache_dir: Path = field(default_factory=lambda: default_home() / "cache")
    data_root: Path = field(default_factory=lambda: default_home() / "data")
    download: bool = True
    command: str = ""
