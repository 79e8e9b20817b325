"""Content-addressed artifact cache: every stage output lives under a key of all it depends on.

An artifact is a directory ``<root>/<stage>/<key>/`` holding the stage's files and a
``meta.json``. It is written into a temporary sibling directory and renamed into place only
when complete, so a killed run never leaves a half-written artifact: the next run either finds
the whole artifact or none. Long stages keep resumable state in ``<key>.partial/``.

Every stage goes through :meth:`ArtifactCache.cached`: load the artifact when it is there,
else compute and write it, and load what was written, so a fresh result and a cached one are
the same bytes. An artifact that exists but fails to load is recomputed with a one-line note.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import numpy as np

from oodbench.locks import exclusive

T = TypeVar("T")


@dataclass(frozen=True)
class Artifact:
    """A complete cached stage output."""

    path: Path
    meta: dict[str, Any]

    def array(self, name: str, mmap: bool = False) -> np.ndarray:
        return np.load(self.path / f"{name}.npy", mmap_mode="r" if mmap else None)

    def file(self, name: str) -> Path:
        return self.path / name


class ArtifactCache:
    """Stage outputs on disk, keyed by content; counts hits and misses per stage."""

    META = "meta.json"

    def __init__(self, root: str | os.PathLike, note: Callable[[str], None] = print) -> None:
        self.root = Path(root)
        self.note = note
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    def directory(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Artifact | None:
        """The artifact of ``stage`` under ``key``, or ``None``; counted as a hit or a miss."""
        artifact = self.open(stage, key)
        if artifact is None:
            self.misses[stage] += 1
        else:
            self.hits[stage] += 1
        return artifact

    def exists(self, stage: str, key: str) -> bool:
        """Whether a complete artifact is there (not counted)."""
        return (self.directory(stage, key) / self.META).is_file()

    def cached(self, stage: str, key: str, compute: Callable[[Path], dict[str, Any]], load: Callable[[Artifact], T]) -> T:
        """The artifact of ``stage`` under ``key``, loaded; computed first when missing or unreadable.

        ``compute(directory)`` writes the stage's files into ``directory`` and returns the meta
        data; resumable state of an unfinished computation lives in :meth:`scratch` until the
        artifact is complete. One process computes a key at a time (a lock file under ``.locks``); one
        that waited for another loads what that one wrote.
        """
        artifact = self.get(stage, key)
        if artifact is not None:
            try:
                return load(artifact)
            except Exception as error:  # a truncated, foreign or outdated file: recompute, never fail the cell
                self.note(f"note: cached {stage} {key[:12]} could not be loaded ({type(error).__name__}: "
                          f"{str(error)[:160]}); recomputing it")
                self.hits[stage] -= 1
                self.misses[stage] += 1
        with exclusive(self.root / ".locks" / stage / key):  # one writer per key, across processes
            if artifact is not None or self.open(stage, key) is None:  # unreadable, or still missing after the wait
                with self.put(stage, key) as (directory, meta):
                    meta.update(compute(directory))
                self.drop_scratch(stage, key)
        return load(self.open(stage, key))

    def cached_group(self, stage: str, keys: Mapping[str, str],
                     compute: Callable[[list[str], dict[str, Artifact]], dict[str, Callable[[Path], dict[str, Any]]]],
                     load: Callable[[str, Artifact], T]) -> dict[str, T]:
        """The artifacts of ``stage`` under ``keys`` (name -> key), loaded; the missing ones computed together.

        ``compute(missing names, present artifacts by name)`` returns, per missing name, the function that
        writes its files into a directory and returns its meta data; each artifact is written whole, as
        with :meth:`cached`. One process computes a group at a time; one that waited loads what the other
        wrote. Unreadable artifacts count as missing.
        """
        present: dict[str, Artifact] = {}
        unreadable: set[str] = set()
        for name, key in keys.items():
            artifact = self.get(stage, key)
            if artifact is not None:
                try:
                    load(name, artifact)
                    present[name] = artifact
                except Exception as error:  # recompute, never fail the cells
                    self.note(f"note: cached {stage} {key[:12]} could not be loaded ({type(error).__name__}: "
                              f"{str(error)[:160]}); recomputing it")
                    unreadable.add(name)
                    self.hits[stage] -= 1
                    self.misses[stage] += 1
        if len(present) < len(keys):
            group = hashlib.sha256(" ".join(sorted(keys.values())).encode()).hexdigest()[:24]
            with exclusive(self.root / ".locks" / stage / f"group-{group}"):  # one writer per group, across processes
                for name in [n for n in keys if n not in present and n not in unreadable]:
                    artifact = self.open(stage, keys[name])  # written by another process while this one waited
                    if artifact is not None:
                        present[name] = artifact
                missing = [name for name in keys if name not in present]
                if missing:
                    writers = compute(missing, present)
                    for name in missing:
                        with self.put(stage, keys[name]) as (directory, meta):
                            meta.update(writers[name](directory))
        return {name: load(name, self.open(stage, key)) for name, key in keys.items()}

    def open(self, stage: str, key: str) -> Artifact | None:
        """The artifact, or ``None``, without counting (e.g. right after writing it)."""
        path = self.directory(stage, key)
        try:
            meta = json.loads((path / self.META).read_text())
        except (OSError, ValueError):
            return None
        return Artifact(path, meta)

    @contextmanager
    def put(self, stage: str, key: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Write an artifact: yields a temporary directory and the meta data to fill; on success the
        directory becomes the artifact. ``meta.json`` is saved last, so only complete artifacts have one.
        """
        final = self.directory(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
        meta: dict[str, Any] = {}
        try:
            yield tmp, meta
            (tmp / self.META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def scratch(self, stage: str, key: str) -> Path:
        """A directory for resumable state of an unfinished stage (kept across interruptions)."""
        path = self.root / stage / f"{key}.partial"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def drop_scratch(self, stage: str, key: str) -> None:
        shutil.rmtree(self.root / stage / f"{key}.partial", ignore_errors=True)

    def summary(self) -> str:
        stages = sorted(set(self.hits) | set(self.misses))
        parts = [f"{s}: {self.hits[s]} cached, {self.misses[s]} computed" for s in stages]
        return "; ".join(parts) if parts else "no cached stages used"


def save_array(directory: Path, name: str, array: np.ndarray) -> None:
    np.save(directory / f"{name}.npy", np.ascontiguousarray(array))
