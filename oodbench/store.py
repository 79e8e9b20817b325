"""The results database: SQLite, one row per (run, method, parameters, checkpoint, ID, OOD, seed).

Every metric is stored as a raw float, with the ID accuracy, fit and score time, peak memory and
the paths of the per-sample score files (``scores/`` next to the database). A run row keeps the
command, resolved configuration, package versions, git commit and hardware.

Writes are atomic: score files are written to a temporary name and renamed; all rows of one
method are inserted in one transaction. A killed run leaves complete rows or none, and is shown
``interrupted`` once its process is gone: the process recording a run holds a lock file
(``.live/<run id>.lock``) for as long as it lives.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from oodbench.errors import ConfigError
from oodbench.locks import Lease, held
from oodbench.metrics import METRIC_NAMES

RESULT_COLUMNS = {
    "run_id": "TEXT NOT NULL",
    "method": "TEXT NOT NULL",
    "params": "TEXT NOT NULL",
    "params_hash": "TEXT NOT NULL",
    "method_version": "TEXT",
    "backbone": "TEXT NOT NULL",
    "checkpoint": "TEXT NOT NULL",
    "checkpoint_origin": "TEXT",
    "id_dataset": "TEXT NOT NULL",
    "ood_dataset": "TEXT NOT NULL",
    "id_stands_for": "TEXT",
    "ood_stands_for": "TEXT",
    #: 'near' / 'far' as the ID set groups the OOD set ('' when it does not say)
    "ood_group": "TEXT",
    #: the row of the method in paper-style tables (its plugin's ``table_order``)
    "table_order": "INTEGER",
    #: the settings the preset reduced against the paper's, e.g. "epochs 2 (paper 10)"; '' for none
    "reduced": "TEXT",
    #: what the data-hygiene checks found that concerns the cell (shared sources, near-duplicates); '' for nothing
    "hygiene": "TEXT",
    "aux_dataset": "TEXT",
    #: the adversarial attack of the cell ('' for clean inputs), e.g. "atom: L-inf PGD eps 8/255, ..."
    "attack": "TEXT NOT NULL DEFAULT ''",
    #: 1 when the method declares that its scores use their batch (marked in every table and export)
    "transductive": "INTEGER",
    "seed": "INTEGER NOT NULL",
    "status": "TEXT NOT NULL",
    "error": "TEXT",
    **{name: "REAL" for name in METRIC_NAMES},
    "id_accuracy": "REAL",
    #: full-spectrum evaluation: covariate-shifted ID set -> accuracy of the scoring network (JSON)
    "csid_accuracy": "TEXT",
    "train_time_s": "REAL",
    "fit_time_s": "REAL",
    "score_time_s": "REAL",
    "attack_passes": "INTEGER",
    "peak_memory_mb": "REAL",
    "n_id": "INTEGER",
    "n_ood": "INTEGER",
    "nonfinite_id": "INTEGER",
    "nonfinite_ood": "INTEGER",
    "id_scores_path": "TEXT",
    "ood_scores_path": "TEXT",
    "protocol": "TEXT",
    "created": "REAL",
}

RUN_COLUMNS = {
    "run_id": "TEXT PRIMARY KEY",
    "started": "REAL",
    "finished": "REAL",
    "status": "TEXT",
    "command": "TEXT",
    "config": "TEXT",
    "versions": "TEXT",
    "git_commit": "TEXT",
    "hardware": "TEXT",
    "wall_time_s": "REAL",
    "images_forwarded": "INTEGER",
    "stages": "TEXT",
    "provenance": "TEXT",
}

#: ``oodbench verify``'s findings: one row per re-executed cell and check
VERIFY_COLUMNS = {
    "run_id": "TEXT NOT NULL",
    "method": "TEXT NOT NULL",
    "params_hash": "TEXT NOT NULL",
    "ood_dataset": "TEXT NOT NULL",
    "seed": "INTEGER NOT NULL",
    #: the cell's attack ('' for clean inputs)
    "attack": "TEXT NOT NULL DEFAULT ''",
    #: 'reproduced' or 'differs'
    "verdict": "TEXT NOT NULL",
    #: why not, when not: code changed, data changed, checkpoint changed, nondeterminism
    "reason": "TEXT",
    #: the largest absolute difference over the metrics, and the tolerance it was held to (0: exactly)
    "difference": "REAL",
    "tolerance": "REAL",
    #: the git commit and oodbench version that re-executed the cell
    "checked_with": "TEXT",
    "created": "REAL",
}

#: what makes a result row one cell of one run (a repeated cell replaces the row)
UNIQUE_CELL = ("run_id", "method", "params_hash", "checkpoint", "id_dataset", "ood_dataset", "seed", "attack")


def _create_statements() -> list[str]:
    runs = ", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())
    results = ", ".join(f"{k} {v}" for k, v in RESULT_COLUMNS.items())
    return [
        f"CREATE TABLE IF NOT EXISTS runs ({runs})",
        f"CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, {results}, "
        f"UNIQUE ({', '.join(UNIQUE_CELL)}))",
        "CREATE INDEX IF NOT EXISTS results_by_run ON results (run_id)",
        f"CREATE TABLE IF NOT EXISTS verifications (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        f"{', '.join(f'{k} {v}' for k, v in VERIFY_COLUMNS.items())})",
    ]


class ResultStore:
    """Read and write runs and results; per-sample scores live in ``<dir>/scores/``."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.scores_dir = self.path.parent / "scores"
        self._leases: dict[str, Lease] = {}

    def _lease_path(self, run_id: str) -> Path:
        return self.path.parent / ".live" / f"{run_id}.lock"

    def require(self) -> "ResultStore":
        """This store, if its database exists (reading never creates one)."""
        if not self.path.exists():
            raise ConfigError(f"no results store at {self.path}", "run `oodbench run ...` first, or pass --results DIR")
        return self

    def _connect(self) -> sqlite3.Connection:
        """A connection to the database, created or brought up to the current schema; a file that is not
        an SQLite database is an error naming it (and is left as it is)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            with connection:
                for statement in _create_statements():
                    connection.execute(statement)
                _add_missing_columns(connection)
                _widen_unique_cell(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise
            raise ConfigError(f"{self.path} is not an oodbench results database ({error})",
                              "move the file away, or pass --results DIR to write the results elsewhere") from None
        return connection

    def check(self) -> "ResultStore":
        """This store, once it is known to be writable: called before a run starts any work."""
        self._connect().close()
        return self

    def start_run(self, run_id: str, **fields: Any) -> None:
        """Open a run's row; this process holds the run's lease until :meth:`finish_run` (or its end)."""
        self._leases[run_id] = Lease(self._lease_path(run_id))
        row = {"run_id": run_id, "started": time.time(), "status": "running", **_jsonify(fields)}
        with self._connect() as connection:
            connection.execute(
                f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
            )

    def finish_run(self, run_id: str, status: str, **fields: Any) -> None:
        row = {"finished": time.time(), "status": status, **_jsonify(fields)}
        with self._connect() as connection:
            connection.execute(
                f"UPDATE runs SET {', '.join(f'{k} = ?' for k in row)} WHERE run_id = ?", [*row.values(), run_id]
            )
        lease = self._leases.pop(run_id, None)
        if lease is not None:
            lease.release()

    def _settle(self, connection: sqlite3.Connection) -> None:
        """Mark ``interrupted`` every run still ``running`` whose process is gone (killed, crashed):
        nobody holds its lease any more."""
        for (run_id,) in connection.execute("SELECT run_id FROM runs WHERE status = 'running'").fetchall():
            if not held(self._lease_path(run_id)):
                connection.execute("UPDATE runs SET status = 'interrupted' WHERE run_id = ?", [run_id])

    def save_scores(self, key: str, scores: np.ndarray) -> str:
        """Write one score array (once per content key) and return its path."""
        self.scores_dir.mkdir(parents=True, exist_ok=True)
        path = self.scores_dir / f"{key}.npy"
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, np.asarray(scores, dtype=np.float32))
            os.replace(tmp, path)
        return str(path)

    def add_results(self, rows: Iterable[dict[str, Any]]) -> None:
        """Insert rows in one transaction (all or none); a repeated cell of the same run is replaced."""
        rows = [{**_jsonify(r), "created": time.time()} for r in rows]
        if not rows:
            return
        unknown = set().union(*rows) - set(RESULT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown result columns: {sorted(unknown)}")
        with self._connect() as connection:
            for row in rows:
                connection.execute(
                    f"INSERT OR REPLACE INTO results ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )

    def results(self, run_id: str | None = None) -> pd.DataFrame:
        query, args = "SELECT * FROM results", []
        if run_id is not None:
            query, args = query + " WHERE run_id = ?", [run_id]
        with self._connect() as connection:
            return pd.read_sql_query(query + " ORDER BY id", connection, params=args)

    def add_verifications(self, rows: Iterable[dict[str, Any]]) -> None:
        """Record ``oodbench verify``'s findings (one transaction)."""
        rows = [{**r, "created": time.time()} for r in rows]
        with self._connect() as connection:
            for row in rows:
                connection.execute(f"INSERT INTO verifications ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                   list(row.values()))

    def verifications(self) -> pd.DataFrame:
        """Every verification recorded in this store, oldest first."""
        with self._connect() as connection:
            return pd.read_sql_query("SELECT * FROM verifications ORDER BY id", connection)

    def runs(self) -> pd.DataFrame:
        """Every run, in start order; runs whose process died are shown ``interrupted``."""
        with self._connect() as connection:
            self._settle(connection)
            return pd.read_sql_query("SELECT * FROM runs ORDER BY started", connection)

    def latest_run_id(self) -> str | None:
        """The latest *complete* run (an interrupted or failed one is never picked by default)."""
        with self._connect() as connection:
            self._settle(connection)
            row = connection.execute("SELECT run_id FROM runs WHERE status = 'complete' ORDER BY started DESC LIMIT 1").fetchone()
        return row[0] if row else None


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Bring a store written by an older oodbench up to the current schema (new columns are NULL there)."""
    for table, columns in (("runs", RUN_COLUMNS), ("results", RESULT_COLUMNS), ("verifications", VERIFY_COLUMNS)):
        present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns.items():
            if name not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind.replace(' NOT NULL', '')}")


def _filled(name: str, kind: str) -> str:
    """A column of an old row, with a neutral value where the new schema forbids NULL."""
    if "NOT NULL" not in kind:
        return name
    return f"COALESCE({name}, {0 if kind.startswith('INTEGER') else repr('')})"


def _widen_unique_cell(connection: sqlite3.Connection) -> None:
    """A store from before attacks knew a cell without its attack: rebuild the table with the wider key."""
    (schema,) = connection.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'results'").fetchone()
    unique = re.search(r"UNIQUE\s*\(([^)]*)\)", schema)
    if unique and "attack" in unique.group(1):
        return
    columns = ", ".join(["id", *RESULT_COLUMNS])
    values = ", ".join(["id", *(_filled(name, kind) for name, kind in RESULT_COLUMNS.items())])
    connection.execute("ALTER TABLE results RENAME TO results_before_attacks")
    connection.execute("DROP INDEX IF EXISTS results_by_run")
    for statement in _create_statements()[1:3]:
        connection.execute(statement)
    connection.execute(f"INSERT INTO results ({columns}) SELECT {values} FROM results_before_attacks")
    connection.execute("DROP TABLE results_before_attacks")
    connection.execute("UPDATE results SET attack = '' WHERE attack IS NULL")


def json_field(value: object) -> dict:
    """A JSON column of a store row as a dict ({} where it is empty: stores of older versions, failed cells)."""
    return json.loads(value) if isinstance(value, str) else {}


def _jsonify(fields: dict[str, Any]) -> dict[str, Any]:
    """Store dicts and lists as JSON text; numpy scalars as Python numbers."""
    out = {}
    for key, value in fields.items():
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, sort_keys=True, default=str)
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out
