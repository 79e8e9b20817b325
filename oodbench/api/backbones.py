"""The backbone contract: :class:`BackboneSpec`, its published checkpoints and training recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class PytorchOodWeights:
    """Weights of pytorch-ood's model registry: ``key`` of :func:`pytorch_ood.model.load_model` (URL and sha256 there)."""

    key: str


@dataclass(frozen=True)
class TorchvisionWeights:
    """Weights of torchvision's weights API: a ``*_Weights`` enum member, ``"ResNet50_Weights.IMAGENET1K_V1"``."""

    name: str


@dataclass(frozen=True)
class PackageWeights:
    """A weights file an installable package ships: ``module.function()`` returns its path; ``pip`` installs it."""

    module: str
    function: str
    pip: str


@dataclass(frozen=True)
class TimmWeights:
    """timm's pretrained weights of model ``name`` (``model`` or ``model.tag``)."""

    name: str


@dataclass(frozen=True)
class OpenClipWeights:
    """open_clip's pretrained weights of a CLIP architecture: ``name`` is ``MODEL@TAG`` (``ViT-B-32@openai``)."""

    name: str

    @property
    def model(self) -> str:
        return self.name.partition("@")[0]

    @property
    def tag(self) -> str:
        return self.name.partition("@")[2]


#: a :attr:`KnownCheckpoint.dataset` meaning every ID set (weights of a zero-shot backbone, whose last layer is made
#: from the ID set's class names)
ANY_DATASET = "*"


@dataclass(frozen=True)
class KnownCheckpoint:
    """Published weights of a backbone and where they come from (``weights``: one of the sources above;
    :mod:`oodbench.models.weights` fetches them).

    ``dataset`` is the ID dataset the weights were trained on, or the label space they classify into
    (``"imagenet-1k"``: any ID set whose labels are ImageNet-1K's class indices,
    :attr:`DatasetSpec.label_space`), or :data:`ANY_DATASET` for a zero-shot backbone's. ``expected_accuracy`` is the ID test accuracy the weights should
    reach on ``dataset``; the engine checks it whenever that dataset's test split is evaluated.
    """

    dataset: str
    seed: int
    weights: PytorchOodWeights | TorchvisionWeights | PackageWeights | TimmWeights | OpenClipWeights
    expected_accuracy: float | None = None
    tolerance: float = 0.01
    accuracy_source: str = ""


@dataclass(frozen=True)
class TrainingRecipe:
    """The cross-entropy classifier recipe: SGD + Nesterov, cosine schedule per step, crop + flip."""

    epochs: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    batch_size: int = 128
    crop_padding: int = 4
    flip: bool = True
    warmup_epochs: float = 0.0
    #: torchvision's ``RandomResizedCrop`` (scale 0.08-1, aspect 3/4-4/3) of each stored image, back to its
    #: size, before the flip (ImageNet recipes); ``crop_padding`` is then 0
    random_resized_crop: bool = False


@dataclass(frozen=True)
class BackboneSpec:
    """A classifier architecture and what oodbench knows about it.

    ``build(num_classes, channels)`` returns a module with ``features(x)`` (penultimate pooled
    features, ``B x feature_dim``) and a final linear layer ``fc``, taking normalised inputs.

    Its input: images resized so the shorter side is ``resize_size`` (``input_size`` when None) with
    ``interpolation``, centre-cropped to ``input_size``, then normalised with ``mean`` and ``std``
    (``normalisation[dataset]`` instead for the ID sets whose training used other statistics, e.g.
    OpenOOD's CIFAR-100 networks). ``trainable``: False for networks only ever used with published
    weights (ImageNet models): their known checkpoint is used whatever the preset says.
    ``state_renames``: ``(prefix in released files, prefix here)`` pairs, the first that matches a
    key wins, for weights files in another naming (torchvision's ``heads.head.`` as ``fc.``).
    ``layers``: the intermediate layers methods may read (:attr:`Capabilities.layers`), name -> dotted path
    of the submodule of the built network whose output it is (``"path:input"``: what that module receives),
    in forward order; by convention ``last_map`` is the last feature map before the global pooling.
    ``class_head``: for a zero-shot backbone (a vision-language model), ``class_head(net, class_names)`` sets the
    final layer from the ID set's class names after the weights are loaded; the weights then need no ``fc``, and
    the class names are part of the network's identity.
    """

    name: str
    build: Callable[[int, int], nn.Module]
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    feature_dim: int
    checkpoints: tuple[KnownCheckpoint, ...] = ()
    recipe: TrainingRecipe = field(default_factory=TrainingRecipe)
    description: str = ""
    citation: str = ""
    origin: str = "built-in"
    resize_size: int | None = None
    interpolation: str = "bilinear"
    normalisation: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(default_factory=dict)
    trainable: bool = True
    state_renames: tuple[tuple[str, str], ...] = ()
    layers: Mapping[str, str] = field(default_factory=dict)
    class_head: Callable[[nn.Module, Sequence[str]], None] | None = None

    def known_checkpoint(self, dataset: str, seed: int, label_space: str | None = None) -> KnownCheckpoint | None:
        """Published weights for exactly this dataset (a re-encoded copy has other pixels: none), or for the
        label space it declares."""
        for checkpoint in self.checkpoints:
            if checkpoint.dataset in {dataset, label_space, ANY_DATASET} and checkpoint.seed == seed:
                return checkpoint
        return None

    def statistics(self, dataset: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) that normalise inputs for an ID dataset (the name it stands for)."""
        return self.normalisation.get(dataset or "", (self.mean, self.std))


@dataclass(frozen=True)
class BackboneFamily:
    """Backbones made on request: ``--backbone PREFIX+NAME`` (``timm:convnext_tiny``) is the :class:`BackboneSpec`
    ``make(NAME)`` returns, for model zoos too large to list."""

    prefix: str
    make: Callable[[str], BackboneSpec]
    description: str = ""
    origin: str = "built-in"
