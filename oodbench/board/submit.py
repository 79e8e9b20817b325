"""``oodbench submit``: evaluate a method file someone else wrote, sealed, and write an entry bundle.

The file is copied into the bundle first (``method/``) and evaluated from there with ``--sealed``: its ``fit()``
and ``score()`` run in sandboxed workers that see only their inputs (:mod:`oodbench.engine.sealed`), on a named
protocol. A given checkpoint is copied into the bundle (``checkpoint/``) and evaluated from that copy, so the
bundle holds everything ``oodbench verify`` needs to re-check it besides the data. The bundle::

    entry.json      the method(s), the file's name and sha256, the protocol and its version(s), the run, the
                    checkpoint's sha256, the oodbench version and commit that evaluated it
    method/FILE     the method file, byte for byte
    results/        the run's store (records, per-sample scores, provenance)
    report/         the run's HTML report

``oodbench leaderboard BUNDLE`` lists it as a submission (checking the file's digest); ``oodbench verify --results
BUNDLE`` re-executes its cells.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from oodbench import __version__
from oodbench.board.sources import DATABASE, ENTRY
from oodbench.errors import ConfigError
from oodbench.hashing import file_digest
from oodbench.provenance import git_commit


def submitted_methods(registry, method_file: Path) -> list[str]:
    """The methods ``method_file`` declares (the registry's entries whose origin is that file)."""
    return [name for (kind, name), origin in registry.origins.items()
            if kind == "methods" and Path(origin).resolve() == method_file.resolve()]


def submit(method_file: str | Path, out: str | Path, *, catalogs: Sequence[str | Path] = (), checkpoint: str | Path | None = None,
           protocol: str = "clean", **run_options: Any) -> Path:
    """Evaluate the methods of ``method_file`` sealed under ``protocol`` and write the bundle ``out``; returns
    ``out/entry.json``. ``run_options`` go to :func:`oodbench.run` (``id``, ``ood``, ``preset``, ``seeds``, ...)."""
    import oodbench
    from oodbench.registry import build_registry
    from oodbench.report.html import Selection, build_report, write_atomically
    from oodbench.store import ResultStore

    method_file, out = Path(method_file), Path(out)
    if not method_file.is_file() or method_file.suffix != ".py":
        raise ConfigError(f"{method_file} is not a Python file", "pass the .py file that defines the method class")
    if (out / ENTRY).exists() or (out / "results").exists():
        raise ConfigError(f"{out} already holds a submission", "pass another --out, or remove it")
    (out / "method").mkdir(parents=True, exist_ok=True)
    copied = out / "method" / method_file.name
    shutil.copy2(method_file, copied)
    registry = build_registry([out / "method"], catalogs, sealed=True)
    problems = [str(problem) for problem in registry.problems if str(copied) in str(problem)]
    methods = submitted_methods(registry, copied)
    if not methods:
        shutil.rmtree(out)
        raise ConfigError(f"{method_file} declares no method" + (f" ({'; '.join(problems)})" if problems else ""),
                          "define a subclass of oodbench.api.Method with a name (docs/plugins.md)")
    weights = None
    if checkpoint is not None:
        (out / "checkpoint").mkdir(exist_ok=True)
        weights = out / "checkpoint" / Path(checkpoint).name
        shutil.copy2(checkpoint, weights)
    result = oodbench.run(methods=methods, protocol=protocol, sealed=True, plugins=[out / "method"], catalogs=catalogs,
                          checkpoint=str(weights) if weights else None, results=out / "results",
                          command=f"oodbench submit {method_file.name} --protocol {protocol}", **run_options)
    records = result.records
    versions = sorted({json.loads(p).get("version", "") for p in records["protocol"] if isinstance(p, str)})
    build_report(ResultStore(out / "results" / DATABASE), Selection(run=result.run_id), out / "report")
    entry = {"method": methods[0], "methods": methods, "method_file": method_file.name, "method_sha256": file_digest(copied),
             "protocol": protocol, "protocol_versions": versions, "run_id": result.run_id, "sealed": True,
             "checkpoint": weights.name if weights else None, "checkpoint_sha256": file_digest(weights) if weights else None,
             "cells": int(len(records)), "cells_ok": int((records["status"] == "ok").sum()),
             "evaluated_with": f"oodbench {__version__} @ {git_commit() or 'unrecorded'}",
             "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    write_atomically(out / ENTRY, json.dumps(entry, indent=1, sort_keys=True))
    return out / ENTRY
