"""What ``oodbench leaderboard`` and ``oodbench verify`` read: a results store, or a submission's bundle.

A store is a results directory (``oodbench.sqlite`` inside) or the database file itself. A bundle is the
directory ``oodbench submit`` writes: ``entry.json`` (the method file's name and digest, the protocol, the run),
``results/`` (the store of its run), ``method/`` (the method file) and ``report/``. Its method file must still
have the digest the bundle recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from oodbench.errors import ConfigError
from oodbench.hashing import file_digest
from oodbench.store import ResultStore

ENTRY = "entry.json"
DATABASE = "oodbench.sqlite"


@dataclass(frozen=True)
class Source:
    """One store the leaderboard or verify reads, and the bundle it came in (None for a plain store)."""

    store: ResultStore
    label: str
    bundle: Path | None = None
    entry: dict | None = None

    @property
    def plugins(self) -> list[Path]:
        """The plugin folders the store's runs need beyond the installed ones (a bundle's method folder)."""
        return [self.bundle / "method"] if self.bundle else []


def open_source(path: str | Path) -> Source:
    """The store at ``path`` (a results directory, its database, or a submission bundle); errors name the path."""
    path = Path(path)
    if (path / ENTRY).is_file():
        entry = json.loads((path / ENTRY).read_text())
        method = path / "method" / entry["method_file"]
        if not method.is_file():
            raise ConfigError(f"{path} is a submission bundle without its method file {method}", "rebuild it with oodbench submit")
        if file_digest(method) != entry["method_sha256"]:
            raise ConfigError(f"{method} does not have the digest {path / ENTRY} records ({entry['method_sha256'][:12]}): "
                              "the method file changed after the submission was evaluated", "rebuild it with oodbench submit")
        return Source(ResultStore(path / "results" / DATABASE).require(), f"submission {entry['method']}", path, entry)
    database = path if path.suffix == ".sqlite" else path / DATABASE
    if not database.is_file():
        raise ConfigError(f"{path} is neither a results store nor a submission bundle (no {DATABASE} or {ENTRY})",
                          "pass a results directory (results/), its oodbench.sqlite, or a folder written by oodbench submit")
    return Source(ResultStore(database), str(path))
