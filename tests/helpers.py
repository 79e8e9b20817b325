"""Helpers shared by the integration tests."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import fakes

from oodbench.api import FitInputs, ImageBatches, Reads, ScoreInputs
from oodbench.cli import main


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_rows(results: Path, table: str = "results") -> list[sqlite3.Row]:
    """All rows of a table of the results store in ``results`` (none when it does not exist)."""
    database = results / "oodbench.sqlite"
    if not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute(f"SELECT * FROM {table}").fetchall()


def make_tiny_catalog(data: Path, val: bool = False) -> Path:
    """A catalog of small zip archives: a 10-class ID set ``tiny`` (with a 40-image ``val`` split if ``val``), an OOD
    set ``tiny-ood`` and auxiliary outliers ``tiny-aux`` (48x48 images, resized like the real auxiliary sets)."""
    data.mkdir(parents=True, exist_ok=True)
    classes = [f"class{i}" for i in range(10)]
    fakes.zip_folder(data / "train.zip", 200, classes, seed=1)
    fakes.zip_folder(data / "test.zip", 50, classes, seed=2)
    fakes.zip_folder(data / "ood.zip", 40, None, seed=3)
    fakes.zip_folder(data / "aux.zip", 60, None, size=48, seed=4)
    if val:
        fakes.zip_folder(data / "val.zip", 40, classes, seed=5)
    catalog = data / "catalog.toml"
    catalog.write_text(
        '[datasets.tiny]\nrole = "id"\nnum_classes = 10\n'
        f'[datasets.tiny.splits.train]\npath = "train.zip"\nsha256 = "{sha256(data / "train.zip")}"\ncount = 200\n'
        f'[datasets.tiny.splits.test]\npath = "test.zip"\nsha256 = "{sha256(data / "test.zip")}"\ncount = 50\n'
        + (f'[datasets.tiny.splits.val]\npath = "val.zip"\nsha256 = "{sha256(data / "val.zip")}"\ncount = 40\n' if val else '') +
        '[datasets.tiny-ood]\nrole = "ood"\n'
        f'[datasets.tiny-ood.splits.test]\npath = "ood.zip"\nsha256 = "{sha256(data / "ood.zip")}"\ncount = 40\n'
        '[datasets.tiny-aux]\nrole = "aux"\n'
        f'[datasets.tiny-aux.splits.train]\npath = "aux.zip"\nsha256 = "{sha256(data / "aux.zip")}"\ncount = 60\n'
    )
    return catalog


def run_tiny(catalog: Path, results: Path, *extra: str) -> int:
    """``oodbench run`` with the smoke preset on the tiny catalog."""
    return main(["run", "--preset", "smoke", "--id", "tiny", "--catalog", str(catalog), "--results", str(results), *extra])


def write_plugin(directory: Path, name: str, score_body: str) -> Path:
    """A plugin file defining one logits-reading method ``name`` whose ``score`` runs ``score_body``
    (statements using ``data``; the last one returns the scores)."""
    directory.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"        {line}" for line in score_body.strip().splitlines())
    path = directory / f"{name}.py"
    path.write_text(
        "from oodbench.api import Method, Reads\n"
        f"class Plugin(Method):\n"
        f"    name = {name!r}\n"
        f"    citation = 'a test plugin'\n"
        f"    reads = frozenset({{Reads.LOGITS}})\n"
        f"    def score(self, data):\n{body}\n"
    )
    return path


READS = {"logits": Reads.LOGITS, "features": Reads.FEATURES, "head": Reads.HEAD, "images": Reads.IMAGES, "layers": Reads.LAYERS}


def score_with(method, num_classes: int = 10, **values):
    """``method.score`` through the contract the engine uses: :class:`ScoreInputs` that hand out
    exactly what the method declared (``values``: logits=..., features=..., head=..., images=...)."""
    inputs = ScoreInputs(method.name, method.capabilities().reads, {READS[k]: v for k, v in values.items()}, num_classes)
    return method.score(inputs)


def fit_with(method, labels, scratch: Path, num_classes: int | None = None, seed: int = 0, **values):
    """Fit ``method`` through the engine's contract; returns a *fresh* instance rebuilt from the fitted
    state after it went through the engine's serialisation (plain data only)."""
    import torch

    from oodbench.engine.stages.fit import decode_state, encode_state
    from oodbench.progress import progress

    classes = num_classes or int(labels.max()) + 1
    inputs = FitInputs(method.name, method.capabilities().reads, {READS[k]: v for k, v in values.items()}, classes,
                       labels, seed, scratch, progress)
    state = decode_state(encode_state(method.fit(inputs), method.name), torch.device("cpu"))
    return type(method)(method.params, state=state)


def image_batches(model, images, batch: int = 8):
    """:class:`ImageBatches` of ``images`` (pixels in [0, 1]) in batches of ``batch``, at full precision."""
    import contextlib

    return ImageBatches(model, lambda: iter(images.split(batch)), len(images), precision=contextlib.nullcontext)
