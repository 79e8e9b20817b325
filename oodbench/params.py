"""Method parameters: defaults, per-dataset and per-preset settings, and typed overrides.

A method's ``Params`` dataclass is the one declaration of its parameters (as scikit-learn's
estimators declare theirs once). Everything else derives from it: command-line strings are
converted by each field's *annotation* (``bool``, ``int``, ``float``, ``str``, ``tuple[...]``,
``Optional[...]`` / ``X | None``, ``Literal[...]``), never by the type of the default value, and
unknown names are errors that list the valid ones.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any, Mapping

from oodbench.errors import ConfigError

#: the protocol every method's defaults describe: its paper's settings, fitted on the ID training split
CLEAN = "clean"


def declared_protocols(method: type) -> set[str]:
    """The protocols ``method`` declares settings for."""
    return {key.split(":")[0] for key in [*method.protocol_defaults, *method.fit_split_under, *method.search_space_under]}

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
_NONE = {"none", "null"}


def _convert(text: str, annotation: Any) -> Any:
    """``text`` as a value of ``annotation``; ValueError when it is not one."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(text, option)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is typing.Literal:
        for option in args:
            if str(option) == text:
                return option
        raise ValueError(text)
    if origin is tuple:
        items = [item.strip() for item in re.split(r"[,;]", text) if item.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0]) for item in items)
        if len(items) != len(args):
            raise ValueError(text)
        return tuple(_convert(item, arg) for item, arg in zip(items, args, strict=True))
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(text)
        return lowered in _TRUE
    if annotation in (int, float):
        return annotation(text)
    if annotation in (str, Any):
        return text
    raise TypeError(f"no conversion from text to {annotation!r}")


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """A parameter value from the command line (a string) or from Python, as its annotation says."""
    if not isinstance(value, str):
        return tuple(value) if isinstance(value, list) else value
    try:
        return _convert(value, annotation)
    except ValueError:
        raise ConfigError(f"parameter {where}={value!r} is not a valid {_describe(annotation)}",
                          "tuples are written as items separated by ',' or ';', None as 'none'") from None
    except TypeError as error:
        raise ConfigError(f"parameter {where} cannot be set from text: {error}") from None


def field_types(params_class: type) -> dict[str, Any]:
    """Field name -> resolved annotation of a ``Params`` dataclass."""
    hints = typing.get_type_hints(params_class)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(params_class)}


def resolve_params(method: type, dataset: str, preset: str, overrides: Mapping[str, Any] | None = None,
                   protocol: str = CLEAN) -> Any:
    """The parameters of ``method`` for an ID dataset, a preset and a protocol.

    Layers, later ones winning: the ``Params`` defaults, ``dataset_defaults[dataset]`` (the
    dataset a copy stands for), ``protocol_defaults[protocol]`` and then
    ``protocol_defaults["protocol:dataset"]``, ``preset_defaults[preset]``, then ``overrides``
    (``--param`` and ``--variant`` values). Unknown names raise :class:`ConfigError` naming the
    valid ones.
    """
    types_ = field_types(method.Params)
    under = method.protocol_defaults
    layers = [method.dataset_defaults.get(dataset, {}), under.get(protocol, {}), under.get(f"{protocol}:{dataset}", {}),
              method.preset_defaults.get(preset, {}), overrides or {}]
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in types_:
                raise ConfigError(f"method '{method.name}' has no parameter '{key}'",
                                  f"use one of: {', '.join(sorted(types_)) or 'none'}")
            values[key] = coerce(value, types_[key], f"{method.name}.{key}")
    return dataclasses.replace(method.Params(), **values)


def reduced_settings(method: type, dataset: str, preset: str, params: Any, protocol: str = CLEAN) -> str:
    """The settings a preset reduced, as text ("epochs 2 (paper 10)"), or "" when it reduced none.

    A setting counts when the preset's layer names it and the value used differs from the
    method's own value for the dataset under the protocol (without the preset's layer).
    """
    paper = resolve_params(method, dataset, "", protocol=protocol)
    reduced = [f"{key} {getattr(params, key)} (paper {getattr(paper, key)})"
               for key in method.preset_defaults.get(preset, {}) if getattr(params, key) != getattr(paper, key)]
    return ", ".join(reduced)
