"""Unit tests of the data layer: subsets, image conversion, the artifact cache, catalog parsing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from oodbench.data.arrays import convert
from oodbench.data.catalog import load_catalog
from oodbench.data.source import ImageFormat
from oodbench.data.subsets import subset_indices
from oodbench.engine.cache import ArtifactCache
from oodbench.errors import ConfigError


def test_stratified_subset_keeps_class_shares_and_is_deterministic():
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    first = subset_indices(labels, 100, seed=0)
    assert np.array_equal(first, subset_indices(labels, 100, seed=0))
    assert np.bincount(labels[first]).tolist() == [10, 20, 30, 40]
    assert len(np.unique(first)) == 100 and np.all(np.diff(first) > 0)
    assert subset_indices(labels, 1000) is None and subset_indices(labels, None) is None


def test_unlabelled_subset_is_uniform_without_replacement():
    picked = subset_indices(np.full(50, -1), 20, seed=1)
    assert len(np.unique(picked)) == 20 and picked.max() < 50


def test_convert_resizes_shorter_side_then_center_crops_and_converts_channels():
    wide = Image.new("RGB", (64, 32), (200, 10, 10))
    out = convert(wide, ImageFormat(16, 3))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and out[8, 8, 0] == 200
    gray = convert(np.full((28, 28), 255, dtype=np.uint8), ImageFormat(32, 3))
    assert gray.shape == (32, 32, 3) and gray.min() == 255
    assert convert(wide, ImageFormat(8, 1)).shape == (8, 8, 1)


def test_cache_artifacts_appear_only_when_complete(tmp_path):
    cache = ArtifactCache(tmp_path)

    def killed(directory):
        (directory / "part.txt").write_text("half")
        raise RuntimeError("killed")

    def whole(directory):
        (directory / "part.txt").write_text("whole")
        return {"a": 1}

    def read(artifact):
        return artifact.meta, artifact.file("part.txt").read_text()

    with pytest.raises(RuntimeError):
        cache.cached("stage", "k1", killed, read)
    assert cache.get("stage", "k1") is None and not cache.exists("stage", "k1")
    assert not any((tmp_path / "stage").iterdir())
    assert cache.cached("stage", "k1", whole, read) == ({"a": 1}, "whole")
    assert cache.cached("stage", "k1", killed, read) == ({"a": 1}, "whole")  # cached: not computed again
    assert (cache.hits["stage"], cache.misses["stage"]) == (1, 3)


def test_an_artifact_that_fails_to_load_is_recomputed_with_a_note(tmp_path):
    notes = []
    cache = ArtifactCache(tmp_path, note=notes.append)
    computed = []

    def compute(directory):
        computed.append(1)
        np.save(directory / "values.npy", np.arange(3))
        return {}

    cache.cached("stage", "k", compute, lambda a: a.array("values"))
    (cache.directory("stage", "k") / "values.npy").write_bytes(b"truncated")
    assert cache.cached("stage", "k", compute, lambda a: a.array("values")).tolist() == [0, 1, 2]
    assert len(computed) == 2 and len(notes) == 1 and "could not be loaded" in notes[0] and "recomputing" in notes[0]


def test_catalog_defaults_and_errors(tmp_path):
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[datasets.a]\nrole = "id"\nnum_classes = 2\n[datasets.a.splits.test]\npath = "a.zip"\nsha256 = "00"\n'
        '[datasets.b]\nrole = "ood"\n[datasets.b.splits.test]\npath = "b"\n'
    )
    specs = {s.name: s for s in load_catalog(path)}
    assert specs["a"].default_ood == ("b",) and specs["a"].splits["test"].path == (tmp_path / "a.zip").resolve()
    path.write_text('[datasets.c]\nrole = "train"\n')
    with pytest.raises(ConfigError, match=r"datasets\.c.*role"):
        load_catalog(path)
    with pytest.raises(ConfigError, match="not found"):
        load_catalog(tmp_path / "missing.toml")


def test_a_held_out_slice_leaves_exactly_the_other_rows_of_the_fit_split():
    from oodbench.data.arrays import SplitArrays
    from oodbench.data.source import ImageFormat
    from oodbench.engine.inputs import held_out

    labels = np.repeat(np.arange(10), 30)
    images = np.arange(len(labels), dtype=np.uint8)[:, None, None, None].repeat(2, axis=1)
    whole = SplitArrays("d", "train", images, labels, "k", "h", ImageFormat(2, 1))
    fit, validation = whole.limited(200), whole.limited(40)
    rows = held_out(fit, validation)
    kept = set(fit.positions[rows].tolist())
    assert kept == set(fit.positions.tolist()) - set(validation.positions.tolist()) and len(rows) >= 160
    assert held_out(whole, validation).tolist() == sorted(set(range(300)) - set(validation.positions.tolist()))
    other = SplitArrays("d", "test", images, labels, "k", "h", ImageFormat(2, 1)).limited(40)
    assert held_out(whole, other) is None and held_out(whole, None) is None
