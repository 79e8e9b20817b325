"""The preset contract: :class:`Preset`, named defaults of a run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Named defaults of a run; every value can be overridden on the command line.

    ``default_for`` says when ``oodbench run`` picks the preset without ``--preset``: ``"no-id"``
    (no ``--id`` given), ``"cuda"`` (an ID set on a machine with CUDA) or ``"cpu"`` (without).
    Methods declare their own per-preset settings (:attr:`Method.preset_defaults`).
    """

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
    #: inference batch size for 32x32 inputs (larger inputs get proportionally fewer images, at least 8);
    #: None: measured on the device (``engine/batching.py``)
    batch_size: int | None = None
    default_for: frozenset[str] = frozenset()
    #: how long a run is meant to take on the machines the preset is for, in seconds: ``oodbench run`` warns,
    #: naming shorter ways, when its estimate on this device is longer (None: no promise)
    expected_s: float | None = None
    origin: str = "built-in"
