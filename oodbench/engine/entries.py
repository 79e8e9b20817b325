"""The method entries of a run: each ``--methods`` name or ``--variant`` label with its resolved
parameters, capabilities and auxiliary set, all taken from what the method declares."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Mapping

import pytorch_ood

from oodbench.api import Capabilities, DatasetSpec, Method
from oodbench.config import RunConfig
from oodbench.errors import ConfigError
from oodbench.hashing import code_closure, stable_hash
from oodbench.models.layers import LayerRead, resolve_layers
from oodbench.params import reduced_settings, resolve_params
from oodbench.registry import Registry


@dataclass(frozen=True)
class MethodEntry:
    """One method as this run uses it. ``label`` is the name its results carry (a variant's label)."""

    label: str
    cls: type[Method]
    params: Any
    caps: Capabilities
    #: the auxiliary outlier set it trains with, when it declares that it needs one
    aux: str | None = None
    #: the settings the preset reduced against the paper's ("epochs 2 (paper 10)"), "" for none
    reduced: str = ""
    #: the ID split the method fits on under the run's protocol
    fit_split: str = "train"
    #: the grid ``--tune`` searches under the run's protocol (empty: not tuned)
    search_space: Mapping[str, tuple] = dataclasses.field(default_factory=dict, hash=False)
    #: the run's backbone and the intermediate layers it exposes, in forward order
    backbone: str = ""
    backbone_layers: tuple[str, ...] = ()

    @property
    def layer_reads(self) -> tuple[LayerRead, ...]:
        """The intermediate layers the method reads on the run's backbone, each with its reduction."""
        return resolve_layers(self.caps.layers, self.backbone_layers, self.label, self.backbone)

    def identity(self) -> dict:
        """What identifies its computation: the method (not a variant's label), parameters, the code of
        its module and of every project module it imports (another method's loss, a shared training
        loop: :func:`~oodbench.hashing.code_closure`), pytorch-ood's version."""
        return {"method": self.cls.name, "params": dataclasses.asdict(self.params), "code": code_closure(self.cls),
                "pytorch_ood": pytorch_ood.__version__}

    @property
    def params_hash(self) -> str:
        return stable_hash(dataclasses.asdict(self.params), 12)

    def with_params(self, values: Mapping[str, Any]) -> "MethodEntry":
        """This entry with some parameters replaced (capabilities follow the parameters)."""
        params = dataclasses.replace(self.params, **values)
        return dataclasses.replace(self, params=params, caps=self.cls(params).capabilities())

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the values of :attr:`search_space`, in declaration order (the first name varies slowest)."""
        names = list(self.search_space)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.search_space.values())]

    def searching(self) -> "MethodEntry":
        """This entry as planned for tuning: it reads what any combination of its grid reads."""
        variants = [self.with_params(values).caps for values in self.grid()]
        reads = frozenset().union(*(caps.reads for caps in variants))
        layers = {name: reduction for caps in [*variants, self.caps] for name, reduction in caps.layers.items()}
        return dataclasses.replace(self, caps=dataclasses.replace(self.caps, reads=reads | self.caps.reads, layers=layers))

    def tuned_by(self, tuned: Any) -> "MethodEntry":
        """This entry with the parameters a ``tune`` task chose (itself when it was not tuned)."""
        return self if tuned is None else self.with_params(tuned.chosen)


def _aux(config: RunConfig, registry: Registry, cls: type[Method], label: str) -> str:
    """``--aux``, else the method's own default auxiliary set; it must have role ``aux``."""
    name = config.aux or cls.default_aux
    if name is None:
        aux_sets = sorted(n for n, spec in registry.datasets.items() if spec.role == "aux") or ["none registered"]
        raise ConfigError(f"method {label} trains with auxiliary outliers but no --aux was given and it declares no default",
                          f"pass --aux NAME; datasets with role aux: {', '.join(aux_sets)}")
    spec = registry.dataset(name)
    if spec.role != "aux":
        raise ConfigError(f"--aux {spec.name} has role '{spec.role}': training on an evaluation set would leak it into the results",
                          "use a dataset of role aux (oodbench list datasets)")
    return name


def method_entries(config: RunConfig, registry: Registry, id_spec: DatasetSpec) -> list[MethodEntry]:
    """Each entry of ``--methods`` (a method or a ``--variant`` label), parameters resolved for the
    dataset the ID set stands for, the protocol and the preset."""
    bases = {config.variants.get(name, (name, {}))[0] for name in config.methods}
    unknown = set(config.params) - bases
    if unknown:
        raise ConfigError(f"--param names method(s) {sorted(unknown)} that are not in --methods",
                          "add them to --methods or drop the parameter")
    backbone = registry.backbone(config.backbone)
    entries = []
    for label in config.methods:
        base, overrides = config.variants.get(label, (label, {}))
        cls = registry.method(base)
        params = resolve_params(cls, id_spec.stands_for, config.preset, {**config.params.get(base, {}), **overrides},
                                config.protocol)
        caps = cls(params).capabilities()
        if config.sealed and caps.trains:
            raise ConfigError(f"--sealed: method {label} fine-tunes the classifier, and train() runs in the engine's process",
                              "seal post-hoc methods (fit and score), or evaluate training methods without --sealed")
        aux = _aux(config, registry, cls, label) if caps.aux else None
        reduced = ", ".join(filter(None, [reduced_settings(cls, id_spec.stands_for, config.preset, params, config.protocol),
                                          config.reduced_note]))
        space = cls.search_space_under.get(config.protocol, cls.search_space)
        resolve_layers(caps.layers, tuple(backbone.layers), label, backbone.name)  # fails here, before any work
        fit_split = cls.fits_on(config.protocol)
        if caps.fits and fit_split not in id_spec.splits:
            raise ConfigError(f"method {label} fits on the ID '{fit_split}' split and {id_spec.name} has none "
                              f"(its splits: {', '.join(sorted(id_spec.splits))})",
                              "leave the method out, or use an ID set with that split (oodbench list datasets)")
        entries.append(MethodEntry(label, cls, params, caps, aux, reduced, fit_split,
                                   {name: tuple(values) for name, values in space.items()}, backbone.name, tuple(backbone.layers)))
    return entries
