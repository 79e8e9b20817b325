"""Stable content hashes for cache keys and checksum verification of files."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def _canonical(value: Any) -> Any:
    """Turn a value into JSON-serialisable data whose dump is the same on every run."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_canonical(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return _canonical(float(value))
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot hash a value of type {type(value).__name__} for a cache key: {value!r}")


def stable_hash(value: Any, length: int = 24) -> str:
    """A hex digest of ``value`` that depends only on its content (dict order does not matter)."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def array_hash(*arrays: np.ndarray | Path, length: int = 24) -> str:
    """A hex digest of the bytes, shapes and dtypes of numpy arrays; an ``.npy`` file's path stands for
    its array (read in blocks, never whole in memory, with the digest of the array itself)."""
    digest = hashlib.sha256()
    for array in arrays:
        if isinstance(array, Path):
            with open(array, "rb") as file:
                read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(np.lib.format.read_magic(file),
                                                                                 np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(file)
                digest.update(f"{dtype.str}{shape}".encode())
                for block in iter(lambda: file.read(1 << 24), b""):
                    digest.update(block)
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:length]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The full hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DigestMemo:
    """Remembers file digests by (path, size, mtime) so that unchanged files are hashed once.

    The memo lives in one JSON file under the cache directory; a file that changes on disk
    (size or modification time) is hashed again.
    """

    def __init__(self, memo_file: Path) -> None:
        self.memo_file = memo_file
        try:
            self._entries: dict[str, str] = json.loads(memo_file.read_text())
        except (OSError, ValueError):
            self._entries = {}

    def digest(self, path: str | os.PathLike, algorithm: str = "sha256") -> str:
        stat = os.stat(path)
        key = f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{algorithm}"
        if key not in self._entries:
            self._entries[key] = file_digest(path, algorithm)
            self._save()
        return self._entries[key]

    def _save(self) -> None:
        self.memo_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.memo_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self._entries))
        os.replace(tmp, self.memo_file)


#: the module names the registry gives plugin files loaded from a directory (``--plugins``)
PLUGIN_PREFIX = "oodbench_plugin_"


def code_version(obj: Any) -> str:
    """A hash of the code (not the docstrings or comments) of the module defining ``obj`` (or of the
    module ``obj``), for the records: which version of a method produced a row."""
    name = _module_name(obj)
    version = _parsed(name).version if name else None
    return version or hashlib.sha256(repr(obj).encode()).hexdigest()[:12]


def code_closure(*roots: Any) -> str:
    """A hash of the code of the modules ``roots`` (modules, module names, or objects whose module
    counts) and of every project module they import, directly or not: part of the cache key of every
    stage, so that editing any module a computation runs through recomputes it, and editing one it
    does not run through (the report, the command line) does not.

    Imports are read from the source, at any depth of a file (a function's lazy import counts); those
    under ``if TYPE_CHECKING:`` run nothing and do not. Project modules are oodbench's, the plugin
    files of ``--plugins`` directories, and those of the top-level package of each root (an installed
    plugin package). Docstrings and comments are not code: editing them keeps every key.
    """
    return _closure_hash(tuple(sorted({name for name in map(_module_name, roots) if name})))


def code_modules(*roots: Any) -> list[str]:
    """The modules :func:`code_closure` hashes for ``roots``, sorted."""
    return sorted(_closure(tuple(sorted({name for name in map(_module_name, roots) if name}))))


def _module_name(obj: Any) -> str | None:
    import inspect

    if isinstance(obj, str):
        return obj
    if inspect.ismodule(obj):
        return obj.__name__
    return getattr(obj, "__module__", None)


def _followed(name: str, packages: frozenset[str]) -> bool:
    top = name.split(".")[0]
    return top in packages or top.startswith(PLUGIN_PREFIX)


@functools.lru_cache(maxsize=None)
def _closure(roots: tuple[str, ...]) -> frozenset[str]:
    packages = frozenset({"oodbench", *(name.split(".")[0] for name in roots)})
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for base, names in _parsed(name).imports:
            if _followed(base, packages):  # only the project's modules are looked up (never torch's)
                stack.extend(f"{base}.{n}" if n and _is_module(f"{base}.{n}") else base for n in names)
    return frozenset(seen)


@functools.lru_cache(maxsize=None)
def _closure_hash(roots: tuple[str, ...]) -> str:
    # a plugin file's module name carries a digest of its path: its code, not where it lies, is what counts
    entries = sorted(f"{PLUGIN_PREFIX if name.startswith(PLUGIN_PREFIX) else name}={_parsed(name).version}"
                     for name in _closure(roots))
    return hashlib.sha256(";".join(entries).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class _Parsed:
    #: hash of the module's code without docstrings (None: no source to read)
    version: str | None
    #: what it imports: (module, names imported from it); ``from package import name`` imports the
    #: submodule ``package.name`` when there is one, else ``package``
    imports: tuple[tuple[str, tuple[str, ...]], ...]


def _source(name: str) -> str | None:
    import importlib.util
    import inspect
    import sys

    module = sys.modules.get(name)
    try:
        if module is not None:
            return inspect.getsource(module)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        return Path(spec.origin).read_text()
    except (OSError, TypeError, ImportError, ValueError):
        return None


def _is_module(name: str) -> bool:
    """Whether ``name`` is a module, without importing it (nor its parent when that is a module)."""
    import importlib.util
    import sys

    if name in sys.modules:
        return True
    try:
        parent = importlib.util.find_spec(name.rpartition(".")[0])
        return parent is not None and parent.submodule_search_locations is not None and importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _imports(tree: Any, name: str, is_package: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """What a module's code imports, skipping ``if TYPE_CHECKING:`` blocks."""
    import ast

    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[str, tuple[str, ...]]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.extend((alias.name, ("",)) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.append((base, tuple(alias.name for alias in node.names)))
        stack.extend(ast.iter_child_nodes(node))
    return tuple(sorted(set(found)))


@functools.lru_cache(maxsize=None)
def _parsed(name: str) -> _Parsed:
    """Once per module and process (a plan asks for a few modules' versions a hundred times; the
    code a process runs does not change while it runs, even if its files do)."""
    import ast
    import importlib.util
    import sys

    text = _source(name)
    try:
        tree = ast.parse(text) if text is not None else None
    except SyntaxError:
        tree = None
    if tree is None:
        return _Parsed(None, ())
    module = sys.modules.get(name)
    if module is not None:
        is_package = hasattr(module, "__path__")
    else:
        spec = importlib.util.find_spec(name)
        is_package = spec is not None and spec.submodule_search_locations is not None
    imports = _imports(tree, name, is_package)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return _Parsed(hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:12], imports)
