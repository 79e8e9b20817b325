"""Complete cache keys: a stage's key covers the code of every project module its computation runs
through, so editing shared code recomputes exactly the stages that depend on it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from oodbench import hashing


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "keypkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def keypkg(tmp_path, monkeypatch):
    """A small package ``keypkg`` on the import path; the closure's per-process memo is cleared around it."""
    _package(tmp_path, {
        "__init__.py": "",
        "stage.py": "from keypkg import helper\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from keypkg import typing_only\n"
                    "def run():\n    from keypkg.lazy import later\n    return helper.value() + later()\n",
        "helper.py": '"""A helper."""\nfrom keypkg.deep import base\ndef value():\n    return base() + 1\n',
        "deep.py": "def base():\n    return 1\n",
        "lazy.py": "def later():\n    return 2\n",
        "typing_only.py": "X = 1\n",
        "unrelated.py": "Y = 2\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    hashing._parsed.cache_clear(), hashing._closure.cache_clear(), hashing._closure_hash.cache_clear()
    yield tmp_path / "keypkg"
    for name in [m for m in sys.modules if m.startswith("keypkg")]:
        del sys.modules[name]
    hashing._parsed.cache_clear(), hashing._closure.cache_clear(), hashing._closure_hash.cache_clear()


def _fresh_closure(root: str) -> str:
    hashing._parsed.cache_clear(), hashing._closure.cache_clear(), hashing._closure_hash.cache_clear()
    return hashing.code_closure(root)


def test_the_closure_follows_imports_at_any_depth_but_not_type_checking_ones(keypkg):
    assert hashing.code_modules("keypkg.stage") == ["keypkg.deep", "keypkg.helper", "keypkg.lazy", "keypkg.stage"]


@pytest.mark.parametrize("edited,changes", [
    ("deep.py", True),  # imported by an import of the stage
    ("lazy.py", True),  # imported inside a function
    ("unrelated.py", False),
    ("typing_only.py", False),
])
def test_editing_a_module_changes_the_key_of_exactly_the_code_that_imports_it(keypkg, edited, changes):
    before = _fresh_closure("keypkg.stage")
    path = keypkg / edited
    path.write_text(path.read_text() + "\nEDITED = True\n")
    assert (_fresh_closure("keypkg.stage") != before) == changes


def test_docstrings_and_comments_are_not_code(keypkg):
    before = _fresh_closure("keypkg.stage")
    helper = keypkg / "helper.py"
    helper.write_text(helper.read_text().replace('"""A helper."""', '"""A helper, documented better."""\n# a comment'))
    assert _fresh_closure("keypkg.stage") == before


COPIED = ("oodbench", "methods", "datasets", "backbones", "presets", "protocols", "references", "benchmarks")


def _stage_counts(out: str) -> dict[str, tuple[int, int]]:
    line = next(line for line in out.splitlines() if line.startswith("stages:"))
    return {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"(\w+): (\d+) cached, (\d+) computed", line)}


def _run_copy(root: Path, *args: str) -> dict[str, tuple[int, int]]:
    """``oodbench run`` from the source tree at ``root`` (not the installed one); its stage counts."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); import source_checkout; from oodbench.cli import main; sys.exit(main(sys.argv[2:]))"
    done = subprocess.run([sys.executable, "-c", code, str(root / "benchmarks"), "run", *args], capture_output=True, text=True,
                          env={**os.environ, "OODBENCH_PROGRESS": "0"}, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return _stage_counts(done.stdout)


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n_EDITED_BY_A_TEST = 1\n")


def test_editing_shared_code_recomputes_the_stages_that_run_through_it_and_nothing_else(tiny_catalog, tmp_path):
    root = tmp_path / "checkout"
    for name in COPIED:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    args = ("--preset", "smoke", "--id", "tiny", "--ood", "tiny-ood", "--catalog", str(tiny_catalog), "--methods", "msp,energy",
            "--results", str(tmp_path / "results"))
    first = _run_copy(root, *args)
    assert first["checkpoint"] == (0, 1) and first["score"][0] == 0
    # notebook.py is imported by energy (its MIM-notebook switch), not by msp
    _edit(root / "oodbench" / "notebook.py")
    second = _run_copy(root, *args)
    assert second["materialise"][1] == 0 and second["checkpoint"] == (1, 0) and second["extract"][1] == 0
    assert second["score"] == (2, 2) and second["metrics"] == (1, 1)  # energy's scores and cell only
    # augment.py runs in the classifier's training: the network and everything after it are computed anew
    _edit(root / "oodbench" / "data" / "augment.py")
    third = _run_copy(root, *args)
    assert third["materialise"][1] == 0 and third["checkpoint"] == (0, 1)
    assert third["extract"][0] == 0 and third["score"] == (0, 4) and third["metrics"] == (0, 2)
