"""One registry for methods, datasets, backbones, presets and protocols, and the discovery that fills it.

Sources, in order: the built-in plugin packages (``oodbench.methods``, ``oodbench.datasets``,
``oodbench.backbones``, ``oodbench.presets``, ``oodbench.protocols``: the top-level folders of the repository); installed
packages through the entry-point groups of the same names; plugin files in extra directories
(``--plugins DIR``, ``OODBENCH_PLUGINS``); datasets of catalog files (``--catalog``,
``OODBENCH_CATALOG``).

A plugin module contributes every :class:`Method` subclass it defines (with a ``name``) and every
:class:`DatasetSpec` / :class:`BackboneSpec` / :class:`Preset` / :class:`Protocol` object at its top level (alone or in
a list). A module that fails to import is recorded in :attr:`Registry.problems` with its file and
error; the others still load.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from oodbench.api import BackboneFamily, BackboneSpec, DatasetSpec, Method, Preset, Protocol
from oodbench.data.catalog import catalog_paths_from_env, load_catalog
from oodbench.errors import ConfigError, UnknownNameError

PLUGINS_ENV = "OODBENCH_PLUGINS"
BUILTIN_PACKAGES = ("oodbench.methods", "oodbench.datasets", "oodbench.backbones", "oodbench.presets", "oodbench.protocols")
ENTRY_POINT_GROUPS = BUILTIN_PACKAGES
SPECS = (DatasetSpec, BackboneSpec, BackboneFamily, Preset, Protocol)


@dataclass(frozen=True)
class PluginProblem:
    """A plugin that could not be loaded: where it is and what went wrong."""

    origin: str
    error: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.error}"


def _short_error(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    location = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(error).__name__}: {error}{location}"


def suggest(name: str, choices: Iterable[str]) -> str:
    """A "did you mean" hint for an unknown name, or a list of the valid names."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return "known: " + ", ".join(choices)


class Registry:
    """Registered methods (classes), datasets, backbones, presets and protocols (specs), with their origins."""

    def __init__(self) -> None:
        self.methods: dict[str, type[Method]] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.backbones: dict[str, BackboneSpec] = {}
        self.presets: dict[str, Preset] = {}
        self.protocols: dict[str, Protocol] = {}
        #: backbones made on request, by name prefix (``timm:``)
        self.families: dict[str, BackboneFamily] = {}
        self.origins: dict[tuple[str, str], str] = {}
        self.problems: list[PluginProblem] = []
        #: ``--sealed``: the run's sandbox, started with the registry; it reads the plugin files' declarations
        self.sandbox: Any = None
        #: the plugin directories and catalog files it was built from (absolute paths; recorded with every run)
        self.sources: dict[str, list[str]] = {"plugins": [], "catalogs": []}

    # -- adding ---------------------------------------------------------------------------

    def _add(self, kind: str, name: str, value: Any, origin: str) -> None:
        table: dict[str, Any] = getattr(self, kind)
        if dataclasses.is_dataclass(value):
            value = dataclasses.replace(value, origin=origin)
        if name in table:
            existing = table[name]
            if dataclasses.is_dataclass(existing):
                existing = dataclasses.replace(existing, origin=origin)
            if existing != value:
                self.problems.append(
                    PluginProblem(origin, f"{kind[:-1]} '{name}' is already registered by {self.origins[(kind, name)]}; skipped")
                )
            return
        table[name] = value
        self.origins[(kind, name)] = origin

    def add(self, value: Any, origin: str) -> bool:
        """Register one method class or spec; returns whether ``value`` was a plugin object."""
        if inspect.isclass(value) and issubclass(value, Method) and value is not Method and value.name:
            self._add("methods", value.name, value, origin)
        elif isinstance(value, DatasetSpec):
            self._add("datasets", value.name, value, origin)
        elif isinstance(value, BackboneSpec):
            self._add("backbones", value.name, value, origin)
        elif isinstance(value, Preset):
            self._add("presets", value.name, value, origin)
        elif isinstance(value, Protocol):
            self._add("protocols", value.name, value, origin)
        elif isinstance(value, BackboneFamily):
            self._add("families", value.prefix, value, origin)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, SPECS) for v in value):
            for item in value:
                self.add(item, origin)
        else:
            return False
        return True

    def add_module(self, module: ModuleType, origin: str) -> None:
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__ != module.__name__:
                continue
            self.add(value, origin)

    def _import(self, import_name: str, origin: str) -> None:
        try:
            module = importlib.import_module(import_name)
        except Exception as error:  # a broken plugin must not stop the others
            self.problems.append(PluginProblem(origin, _short_error(error)))
            return
        self.add_module(module, origin)

    def load_builtins(self) -> None:
        for package_name in BUILTIN_PACKAGES:
            package = importlib.import_module(package_name)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                if not info.name.startswith("_"):
                    module_name = f"{package_name}.{info.name}"
                    self._import(module_name, str(Path(package.__path__[0]) / f"{info.name}.py"))

    def load_entry_points(self) -> None:
        for group in ENTRY_POINT_GROUPS:
            for entry_point in importlib.metadata.entry_points(group=group):
                origin = f"entry point {entry_point.name} = {entry_point.value} ({group})"
                try:
                    value = entry_point.load()
                except Exception as error:  # a broken installed plugin must not stop the others
                    self.problems.append(PluginProblem(origin, _short_error(error)))
                    continue
                if inspect.ismodule(value):
                    self.add_module(value, origin)
                elif not self.add(value, origin):
                    self.problems.append(PluginProblem(origin, f"{value!r} is not a method class or a dataset, backbone, preset or protocol spec"))

    def load_directory(self, directory: str | os.PathLike, sandbox: Any = None) -> None:
        """Load every ``*.py`` file of ``directory`` as a plugin module; with ``sandbox`` (``--sealed``), learn
        what each declares from a sandboxed worker instead (:meth:`declare_file`)."""
        for path, module_name in plugin_modules(directory, self.problems):
            if sandbox is not None:
                self.declare_file(path, module_name, sandbox)
                continue
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except Exception as error:  # a broken plugin file must not stop the others
                sys.modules.pop(module_name, None)
                self.problems.append(PluginProblem(str(path), _short_error(error)))
                continue
            self.add_module(module, str(path))

    def declare_file(self, path: Path, module_name: str, sandbox: Any) -> None:
        """Register the methods the plugin file ``path`` declares to a sealed worker, as stand-ins
        (:mod:`oodbench.engine.declarations`): its code runs in the sandbox only. Its module here is an
        empty one that names the file (for the cache keys, which hash its code)."""
        from oodbench.engine.declarations import stand_in
        from oodbench.engine.zygote import SealedError

        try:
            declared = sandbox.ask({"kind": "describe", "module": module_name, "file": str(path.resolve())})
            classes = [stand_in(method, module_name, str(path.resolve()), sandbox) for method in declared["methods"]]
        except (SealedError, ValueError, TypeError, KeyError) as error:
            self.problems.append(PluginProblem(str(path), f"--sealed: {str(error).splitlines()[0]}"))
            return
        for other in declared["others"]:
            self.problems.append(PluginProblem(str(path), f"--sealed: {other} not loaded: a sealed run runs a plugin file's code only "
                                                          "in the sandbox, which loads no data and builds no network; install it as "
                                                          "a package (entry point) or declare data in a catalog"))
        module = ModuleType(module_name)
        module.__file__ = str(path)
        sys.modules[module_name] = module
        for cls in classes:
            setattr(module, cls.__qualname__.partition(".")[0], cls)
            self.add(cls, str(path))

    def load_catalog(self, path: str | os.PathLike) -> None:
        for spec in load_catalog(path):
            if spec.name in self.datasets:
                raise ConfigError(
                    f"catalog {path} declares dataset '{spec.name}', which is already defined by "
                    f"{self.origins[('datasets', spec.name)]}",
                    "rename the dataset in the catalog",
                )
            self._add("datasets", spec.name, spec, spec.origin)

    # -- lookup ---------------------------------------------------------------------------

    def _lookup(self, kind: str, name: str) -> Any:
        table: dict[str, Any] = getattr(self, kind)
        if name in table:
            return table[name]
        raise UnknownNameError(f"unknown {kind[:-1]} '{name}'", suggest(name, table))

    def method(self, name: str) -> type[Method]:
        return self._lookup("methods", name)

    def dataset(self, name: str) -> DatasetSpec:
        return self._lookup("datasets", name)

    def backbone(self, name: str) -> BackboneSpec:
        """A registered backbone, or one a family makes for a name with its prefix (registered from then on)."""
        family = next((f for prefix, f in self.families.items() if name.startswith(prefix) and name not in self.backbones), None)
        if family is not None:
            self._add("backbones", name, dataclasses.replace(family.make(name[len(family.prefix):]), name=name),
                      self.origins[("families", family.prefix)])
        return self._lookup("backbones", name)

    def preset(self, name: str) -> Preset:
        return self._lookup("presets", name)

    def protocol(self, name: str) -> Protocol:
        return self._lookup("protocols", name)


def plugin_modules(directory: str | os.PathLike, problems: list[PluginProblem]) -> list[tuple[Path, str]]:
    """The plugin files of ``directory`` (``*.py`` not starting with ``_``) with their module names (a
    missing directory is a problem)."""
    directory = Path(directory)
    if not directory.is_dir():
        problems.append(PluginProblem(str(directory), "plugin directory not found"))
        return []
    return [(path, f"oodbench_plugin_{path.stem}_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]}")
            for path in sorted(directory.glob("*.py")) if not path.name.startswith("_")]


def build_registry(plugin_dirs: Iterable[str | os.PathLike] = (), catalogs: Iterable[str | os.PathLike] = (),
                   sealed: bool = False) -> Registry:
    """The registry of this invocation: built-ins, entry points, plugin dirs, then catalogs. With ``sealed``
    the plugin dirs' files are not imported here: a sandbox reads what they declare, and stays as the
    registry's :attr:`~Registry.sandbox` for the run (built-ins and installed packages are trusted code)."""
    registry = Registry()
    env_dirs = [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p.strip()]
    directories = list({Path(d).resolve(): d for d in [*env_dirs, *plugin_dirs]}.values())  # each directory once
    if sealed:
        import torch

        from oodbench.config import default_home
        from oodbench.engine.sealed import SealedWorkers

        files = [path for directory in directories for path, _ in plugin_modules(directory, [])]
        registry.sandbox = SealedWorkers(files, torch.get_num_threads())
        registry.sandbox.protect([default_home(), Path.home(), Path.cwd()])
        registry.sandbox.start()  # it sets itself up (seconds) while this process loads the plugins and plans
    registry.load_builtins()
    registry.load_entry_points()
    for directory in directories:
        registry.load_directory(directory, registry.sandbox)
    unique = {Path(c).resolve(): c for c in [*catalog_paths_from_env(), *catalogs]}
    for catalog in unique.values():
        registry.load_catalog(catalog)
    registry.sources = {"plugins": [str(Path(d).resolve()) for d in directories], "catalogs": [str(c) for c in unique]}
    return registry
