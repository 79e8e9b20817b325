"""Run configuration: the resolved :class:`RunConfig`, and how presets and options make one.

Presets are plugins (:class:`oodbench.api.Preset`, built-ins in ``presets/``): named defaults of a
run that every option overrides. Methods own their per-preset settings. The command line and the
Python API both resolve their options through :func:`resolve_config`.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from oodbench.api import EVERY_LAYER
from oodbench.attacks import parse_attack
from oodbench.errors import ConfigError
from oodbench.params import CLEAN, declared_protocols


def default_home() -> Path:
    """``OODBENCH_HOME`` (default ``~/.cache/oodbench``): downloads and the artifact cache live here."""
    return Path(os.environ.get("OODBENCH_HOME", Path.home() / ".cache" / "oodbench"))


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, after presets and options are merged."""

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
    #: seconds the whole run should take: the backbone's epochs are chosen to fit (``engine/budget.py``)
    time_budget_s: float | None = None
    #: a reduction of the whole run (the epochs a time budget chose), named in every cell's ``reduced``
    reduced_note: str = ""
    limit: int | None = None
    train_limit: int | None = None
    #: inference batch size; None: measured on the device
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = True
    #: method -> parameter -> value (strings from the command line, typed values from Python)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: label -> (method, parameter overrides): a method run again under another name and parameters
    variants: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    aux: str | None = None
    #: adversarial attacks the methods are evaluated under besides clean inputs (oodbench.attacks)
    attacks: tuple[str, ...] = ()
    #: the named protocol whose settings the methods use (``clean``: each paper's, fitted on ID train)
    protocol: str = "clean"
    #: choose the hyperparameters of methods that declare a search space on validation data
    tune: bool = False
    #: the validation OOD set of --tune (never one of the run's test OOD sets)
    tune_ood: str = "uniform"
    #: the ID set's covariate-shifted sets count as ID in every metric (OpenOOD v1.5's full-spectrum evaluation)
    full_spectrum: bool = False
    results_dir: Path = Path("results")
    cache_dir: Path = field(default_factory=lambda: default_home() / "cache")
    data_root: Path = field(default_factory=lambda: default_home() / "data")
    download: bool = True
    command: str = ""
    #: run fit() and score() in sandboxed worker processes (engine/sealed.py): for code you did not write
    sealed: bool = False


def choose_preset(registry, preset: str | None, has_id: bool, has_cuda: bool) -> Any:
    """``preset`` by name, else the one that declares itself the default for this situation."""
    if preset is not None:
        return registry.preset(preset)
    situation = "no-id" if not has_id else ("cuda" if has_cuda else "cpu")
    for candidate in registry.presets.values():
        if situation in candidate.default_for:
            return candidate
    raise ConfigError(f"no preset declares itself the default for '{situation}'", "pass --preset NAME (oodbench list presets)")


#: the fewest images a preset's fixed inference batch is scaled down to for large inputs
MIN_PRESET_BATCH = 8


def preset_batch(preset, backbone) -> int | None:
    """The preset's fixed inference batch for ``backbone``: its size for 32x32 inputs, scaled by the pixels of the
    backbone's input (a 224-pixel network gets 1/49 of the images, at least :data:`MIN_PRESET_BATCH`)."""
    if preset.batch_size is None:
        return None
    return max(MIN_PRESET_BATCH, preset.batch_size * 32 * 32 // backbone.input_size ** 2)


def resolve_config(registry, *, preset: str | None = None, id_dataset: str | None = None, ood: Sequence[str] | None = None,
                   methods: Sequence[str] | None = None, variants: Mapping[str, tuple[str, dict]] | None = None,
                   params: Mapping[str, Mapping[str, Any]] | None = None, backbone: str | None = None,
                   seeds: Sequence[int] = (0,), limit: Any = ..., train_limit: Any = ..., epochs: int | None = None,
                   train: bool | None = None, pretrained: bool | None = None, batch_size: int | None = None, aux: str | None = None,
                   checkpoint: str | None = None, attacks: Sequence[str] = (), protocol: str = CLEAN, tune: bool = False,
                   tune_ood: str = "uniform", full_spectrum: bool = False, say: Callable[[str], None] = print,
                   **environment: Any) -> RunConfig:
    """Merge a preset's defaults with the given options (``...`` for limits means "the preset's").

    ``environment`` holds the options that do not depend on the preset: ``device``, ``precision``,
    ``compile``, ``results_dir``, ``cache_dir``, ``data_root``, ``download``, ``command``, ``sealed``, ``time_budget_s``.
    """
    import torch

    chosen = choose_preset(registry, preset, id_dataset is not None, torch.cuda.is_available())
    if preset is None:
        say(f"preset: {chosen.name} ({chosen.description})")
    protocols = registry.protocols
    if protocol not in protocols:
        raise ConfigError(f"--protocol {protocol}: no such protocol", f"known protocols: {', '.join(sorted(protocols))}")
    id_dataset = id_dataset or chosen.id_dataset
    if id_dataset is None:
        raise ConfigError(f"preset '{chosen.name}' needs an ID dataset", "pass --id NAME (see: oodbench list datasets)")
    id_dataset = registry.protocol(protocol).id_dataset(id_dataset)
    id_spec = registry.dataset(id_dataset)
    if id_spec.role != "id":
        raise ConfigError(f"--id {id_spec.name}: the dataset has role '{id_spec.role}', not 'id'", "choose a dataset listed with role id")
    variants = dict(variants or {})
    for spec in attacks:
        parse_attack(spec)  # a wrong spec is an error now, not after hours of training
    default = default_methods(registry, registry.backbone(backbone or chosen.backbone), id_spec, protocol,
                              say if not methods else lambda _: None)
    entries = list(dict.fromkeys([*(methods or default), *variants]))
    for name in {variants.get(entry, (entry, {}))[0] for entry in entries} & set(registry.methods):
        unknown = declared_protocols(registry.methods[name]) - set(protocols)
        if unknown:
            say(f"warning: method {name} declares settings for protocol(s) {', '.join(sorted(unknown))}, which no plugin "
                f"defines: they are never used (known: {', '.join(sorted(protocols))})")
    if full_spectrum and not id_spec.covariate_shift:
        raise ConfigError(f"--full-spectrum: {id_spec.name} declares no covariate-shifted ID sets",
                          "drop --full-spectrum, or use an ID set that declares them (OpenOOD's cifar10, imagenet200, imagenet)")
    if full_spectrum and attacks:
        raise ConfigError("--full-spectrum with --attack: attacks perturb the ID test split alone, not the covariate-shifted sets",
                          "run the two evaluations separately")
    ood = tuple(ood or id_spec.default_ood)
    if not ood:
        raise ConfigError(f"no OOD datasets given and '{id_spec.name}' has no default list", "pass --ood NAME[,NAME...]")
    if tune and id_spec.validation_ood and id_spec.validation_ood in ood:
        raise ConfigError(f"--ood {id_spec.validation_ood} is the validation OOD set {id_spec.name} tunes on: evaluating on it "
                          "would report numbers of the data the parameters were chosen on", "leave it out of --ood")
    if tune and not id_spec.validation_ood and (tune_ood in ood or registry.dataset(tune_ood).role == "id"):
        raise ConfigError(f"--tune-ood {tune_ood} is a test OOD set of this run or an ID set: tuning on it would leak into the results",
                          "choose a validation set that is not evaluated, e.g. uniform, gaussian or an aux set")
    return RunConfig(
        preset=chosen.name, id_dataset=id_dataset, ood=ood, methods=tuple(entries), backbone=backbone or chosen.backbone,
        seeds=tuple(seeds), checkpoint=checkpoint, pretrained=chosen.pretrained if pretrained is None else pretrained,
        train=chosen.train if train is None else train, epochs=epochs if epochs is not None else chosen.epochs,
        limit=chosen.limit if limit is ... else limit, train_limit=chosen.train_limit if train_limit is ... else train_limit,
        batch_size=batch_size or preset_batch(chosen, registry.backbone(backbone or chosen.backbone)), params={m: dict(v) for m, v in (params or {}).items()},
        variants=variants, aux=aux, attacks=tuple(attacks), protocol=protocol, tune=tune, tune_ood=tune_ood,
        full_spectrum=full_spectrum, **{k: v for k, v in environment.items() if v is not None},
    )


def default_methods(registry, backbone, id_spec, protocol: str, say: Callable[[str], None]) -> list[str]:
    """Every post-hoc method that runs on ``backbone`` and ``id_spec`` under ``protocol``, in paper order: those reading
    intermediate layers the backbone does not expose, and those fitting on an ID split the set does not have, are left
    out, and named."""
    available = set(backbone.layers)
    post_hoc, no_layers, no_split = [], [], []
    for name, cls in registry.methods.items():
        caps = cls(cls.Params()).capabilities()
        if caps.trains:
            continue
        if caps.layers and not (set(caps.layers) <= available if EVERY_LAYER not in caps.layers else bool(available)):
            no_layers.append(name)
        elif caps.fits and cls.fits_on(protocol) not in id_spec.splits:
            no_split.append(name)
        else:
            post_hoc.append(name)
    if no_layers:
        say(f"note: {', '.join(sorted(no_layers))} left out: {'they read' if len(no_layers) > 1 else 'it reads'} intermediate "
            f"layers that backbone {backbone.name} does not expose")
    if no_split:
        say(f"note: {', '.join(sorted(no_split))} left out: {'they fit' if len(no_split) > 1 else 'it fits'} on an ID split "
            f"that {id_spec.name} does not have ({', '.join(sorted({registry.methods[n].fits_on(protocol) for n in no_split}))})")
    return sorted(post_hoc, key=lambda n: (registry.methods[n].table_order, n))


def resolve_grid(registry, *, id_datasets: Sequence[str] = (), backbones: Sequence[str] = (), say: Callable[[str], None] = print,
                 **options: Any) -> tuple[RunConfig, ...]:
    """One :class:`RunConfig` per (ID dataset, backbone) of a grid, in command order; the other options
    (methods, seeds, OOD sets, ...) are shared, and each ID set without ``--ood`` gets its own default list.
    An empty list means the preset's choice."""
    pairs = list(itertools.product(list(id_datasets) or [None], list(backbones) or [None]))
    repeated = sorted({f"{i or 'default'}/{b or 'default'}" for i, b in pairs if pairs.count((i, b)) > 1})
    if repeated:
        raise ConfigError(f"the grid names {', '.join(repeated)} more than once", "list each ID dataset and backbone once")
    if options.get("checkpoint") and len(pairs) > 1:
        raise ConfigError("--checkpoint gives the weights of one ID dataset and backbone, and the grid has several",
                          "run each (ID dataset, backbone) with its --checkpoint separately")
    quiet = lambda text: None  # noqa: E731  (the preset is announced once)
    return tuple(resolve_config(registry, id_dataset=id_dataset, backbone=backbone, say=say if n == 0 else quiet, **options)
                 for n, (id_dataset, backbone) in enumerate(pairs))
