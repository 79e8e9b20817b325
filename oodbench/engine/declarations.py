"""What a plugin file declares, learned without running it in the engine (``--sealed``).

Under ``--sealed`` a plugin file of a ``--plugins`` directory is code the engine must not run: its
module-level statements could reach the engine's memory as freely as its ``score()`` could. So the
file is imported only in a sandboxed worker (:mod:`oodbench.engine.zygote`), which answers with its
*declaration*: for every :class:`~oodbench.api.Method` subclass it defines, the class attributes the
engine plans from (name, citation, what it reads, fits or trains, its settings per dataset, preset and
protocol, its search space), its ``Params`` fields (name, type, default) and its capabilities with the
default parameters, all as JSON. The engine turns each declaration into a stand-in class
(:class:`SandboxedMethod`) that carries the same attributes and parameters; its ``fit()`` and
``score()`` cannot run in the engine (sealed workers import the real class by file), and when the
plugin overrides ``capabilities()`` the stand-in asks the sandbox for the capabilities of other
parameters.

:func:`declaration` runs in the sandbox; everything else runs in the engine and reads the
declaration as data: JSON, parameter types rebuilt from a closed list (``bool``, ``int``, ``float``,
``str``, ``Any``, ``None``, ``tuple[...]``, unions, ``Literal``), never evaluated.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any, Mapping

from oodbench.api import BackboneFamily, BackboneSpec, Capabilities, DatasetSpec, Method, Preset, Protocol, Reads

#: class attributes of a method that its declaration carries, as they are (JSON values)
ATTRIBUTES = ("name", "citation", "summary", "dataset_defaults", "preset_defaults", "default_aux", "fits", "trains", "uses_aux",
              "distributed", "attacked_through", "protocol_defaults", "fit_split", "fit_split_under", "search_space", "search_space_under", "transductive",
              "table_order")
_SCALARS: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str, "Any": Any, "None": type(None)}


class SandboxedMethod(Method):
    """A plugin method known only by its declaration: it plans like the real class and runs only in a
    sealed worker (:mod:`oodbench.engine.sealed`), which imports the real class from ``plugin_file``."""

    plugin_file: typing.ClassVar[str] = ""
    #: the default parameters' capabilities, from the declaration
    declared_capabilities: typing.ClassVar[Mapping[str, Any]] = {}
    #: whether the plugin overrides ``capabilities()`` (they then depend on the parameters)
    custom_capabilities: typing.ClassVar[bool] = False
    #: the sandbox that answers for ``capabilities()`` with other parameters
    sandbox: typing.ClassVar[Any] = None

    def capabilities(self) -> Capabilities:
        if not self.custom_capabilities or self.params == self.Params():
            return capabilities_from(self.declared_capabilities)
        from oodbench.engine.sealed import MethodRef

        answer = self.sandbox.ask({"kind": "capabilities", "method": dataclasses.asdict(MethodRef.of(type(self))),
                                   "params": dataclasses.asdict(self.params)})
        return capabilities_from(answer)

    def _elsewhere(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"method {self.name} from {self.plugin_file} runs only in a sealed worker")

    train = fit = score = attack_score = training_images = _elsewhere


# -- in the sandbox ------------------------------------------------------------------------------


def declaration(module: types.ModuleType) -> dict:
    """What ``module`` (a plugin file, imported in a sealed worker) declares: its methods, and the
    other plugin objects it defines, which a sealed run cannot load."""
    methods, others = [], []
    for value in vars(module).values():
        if inspect.isclass(value) and value.__module__ == module.__name__ and issubclass(value, Method) and value.name:
            methods.append(_method(value))
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (DatasetSpec, BackboneSpec, BackboneFamily, Preset, Protocol)):
                others.append(f"{type(item).__name__} '{getattr(item, 'name', None) or item.prefix}'")
    return {"methods": methods, "others": others}


def _method(cls: type[Method]) -> dict:
    hints = typing.get_type_hints(cls.Params)
    params = []
    for field in dataclasses.fields(cls.Params):
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__qualname__}.Params.{field.name} has no default value")
        params.append({"name": field.name, "type": _type_tree(hints.get(field.name, Any)), "default": field.default})
    return {"qualname": cls.__qualname__, "doc": cls.__doc__ or "", **{name: getattr(cls, name) for name in ATTRIBUTES},
            "reads": sorted(Reads(r).value for r in cls.reads), "params": params, "capabilities": capabilities_of(cls()),
            "custom_capabilities": cls.capabilities is not Method.capabilities}


def capabilities_of(method: Method) -> dict:
    caps = method.capabilities()
    return {"reads": sorted(r.value for r in caps.reads), "fits": caps.fits, "trains": caps.trains, "aux": caps.aux,
            "attack": caps.attack}


def _type_tree(annotation: Any) -> Any:
    for name, scalar in _SCALARS.items():
        if annotation is scalar or (name == "None" and annotation is None):
            return name
    if annotation is Ellipsis:
        return "..."
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return {"literal": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"union": [_type_tree(a) for a in args]}
    if origin is tuple:
        return {"tuple": [_type_tree(a) for a in args]}
    raise TypeError(f"parameter type {annotation!r} cannot be declared to a sealed run (use bool, int, float, str, "
                    "tuple, Literal, Optional)")


# -- in the engine -------------------------------------------------------------------------------


def capabilities_from(values: Mapping[str, Any]) -> Capabilities:
    return Capabilities(reads=frozenset(Reads(r) for r in values["reads"]), fits=bool(values["fits"]),
                        trains=bool(values["trains"]), aux=bool(values["aux"]), attack=values["attack"])


def _type(tree: Any) -> Any:
    if isinstance(tree, str):
        if tree == "...":
            return Ellipsis
        if tree in _SCALARS:
            return _SCALARS[tree]
    elif isinstance(tree, dict) and len(tree) == 1:
        (kind, items), = tree.items()
        if kind == "literal" and all(isinstance(i, (str, int, float, bool)) or i is None for i in items):
            return typing.Literal[tuple(items)]
        if kind == "union":
            return typing.Union[tuple(_type(i) for i in items)]
        if kind == "tuple":
            return tuple[tuple(_type(i) for i in items)]
    raise ValueError(f"not a parameter type: {tree!r}")


def _tuples(value: Any) -> Any:
    """JSON's lists back as the tuples that plugin settings use (parameters are coerced from either)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _tuples(v) for k, v in value.items()}
    return value


def stand_in(declared: Mapping[str, Any], module: str, file: str, sandbox: Any) -> type[SandboxedMethod]:
    """The class the engine plans with for one declared method of the plugin ``file``."""
    fields = []
    for param in declared["params"]:
        annotation = _type(param["type"])
        default = _tuples(param["default"])
        fields.append((str(param["name"]), annotation, dataclasses.field(default=default)))
    qualname = str(declared["qualname"])
    params = dataclasses.make_dataclass("Params", fields, frozen=True)
    params.__qualname__ = f"{qualname}.Params"
    attributes = {name: _tuples(declared[name]) for name in ATTRIBUTES}
    for name in ("fits", "trains", "uses_aux", "distributed", "transductive"):
        attributes[name] = bool(attributes[name])
    if not isinstance(attributes["name"], str) or not attributes["name"]:
        raise ValueError(f"a method of {file} declares no name")
    return types.new_class(qualname.rpartition(".")[2], (SandboxedMethod,), exec_body=lambda body: body.update(
        attributes, __module__=module, __qualname__=qualname, __doc__=str(declared["doc"]), Params=params,
        reads=frozenset(Reads(r) for r in declared["reads"]), plugin_file=file, declared_capabilities=declared["capabilities"],
        custom_capabilities=bool(declared["custom_capabilities"]), sandbox=sandbox))
