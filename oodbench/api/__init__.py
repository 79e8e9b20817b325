"""Plugin contracts: what a method, a dataset, a backbone and a preset declare.

Plugins say *what*; the engine decides *how*. A method declares which representations it
reads (:class:`Reads`), whether it fits on the ID training split and whether it fine-tunes the
classifier; the engine plans extraction, caching and devices from those declarations alone.

A method file in ``methods/`` (or any directory passed with ``--plugins``) defines a subclass of
:class:`Method` with a ``name``; a dataset file defines :class:`DatasetSpec` objects; a backbone
file :class:`BackboneSpec` objects; a preset file :class:`Preset` objects; a protocol file
:class:`Protocol` objects. Discovery finds them.

One module per contract (``inputs`` and ``methods``: the method contract; ``datasets``,
``backbones``, ``presets``, ``protocols``), all re-exported here. The package is the contract and nothing else:
importing it loads no other oodbench module (and not torch), so a plugin that only declares things
is cheap to import.
"""

from oodbench.api.backbones import (
    ANY_DATASET,
    BackboneFamily,
    BackboneSpec,
    KnownCheckpoint,
    OpenClipWeights,
    PackageWeights,
    PytorchOodWeights,
    TimmWeights,
    TorchvisionWeights,
    TrainingRecipe,
)
from oodbench.api.datasets import DatasetSpec
from oodbench.api.inputs import (
    EVERY_LAYER,
    EXTRACTED,
    GRAM_ORDERS,
    Classifier,
    FitInputs,
    Head,
    ImageBatches,
    Reads,
    Reduction,
    ScoreInputs,
    TrainingContext,
    UndeclaredRead,
)
from oodbench.api.methods import Capabilities, Method, NoParams
from oodbench.api.presets import Preset
from oodbench.api.protocols import Protocol

__all__ = [
    "ANY_DATASET",
    "Reads",
    "EXTRACTED",
    "EVERY_LAYER",
    "GRAM_ORDERS",
    "Reduction",
    "Capabilities",
    "Head",
    "Classifier",
    "ImageBatches",
    "FitInputs",
    "ScoreInputs",
    "UndeclaredRead",
    "TrainingContext",
    "Method",
    "NoParams",
    "DatasetSpec",
    "BackboneSpec",
    "BackboneFamily",
    "KnownCheckpoint",
    "PytorchOodWeights",
    "TorchvisionWeights",
    "PackageWeights",
    "OpenClipWeights",
    "TimmWeights",
    "TrainingRecipe",
    "Preset",
    "Protocol",
]
