"""Stable content hashes for cache keys and checksum verification of files."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from types import ModuleType
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


def array_hash(*arrays: np.ndarray, length: int = 24) -> str:
    """A hex digest of the bytes, shapes and dtypes of numpy arrays."""
    digest = hashlib.sha256()
    for array in arrays:
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


def code_version(obj: Any) -> str:
    """A hash of the code (not the docstrings or comments) of the module defining ``obj``.

    Part of every cache key of a stage whose result depends on that code, so editing a method
    or the training recipe invalidates exactly the artifacts it produced, while editing its
    documentation does not.
    """
    import inspect
    import sys

    module = obj if inspect.ismodule(obj) else sys.modules.get(getattr(obj, "__module__", ""), None)
    version = _module_version(module) if module is not None else None
    return version or hashlib.sha256(repr(obj).encode()).hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _module_version(module: ModuleType) -> str | None:
    """Once per module and process (a plan asks for a few modules' versions a hundred times; the
    code a process runs does not change while it runs, even if its files do)."""
    import ast
    import inspect

    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:12]
