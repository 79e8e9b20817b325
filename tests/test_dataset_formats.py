"""Built-in dataset loaders read small fake files in the real on-disk formats, without network."""

from __future__ import annotations

from pathlib import Path

import fakes
import numpy as np
import pytest

from oodbench.data.arrays import materialize
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.cache import ArtifactCache
from oodbench.errors import DataError
from oodbench.hashing import DigestMemo
from oodbench.registry import build_registry

RGB32 = ImageFormat(32, 3)


@pytest.fixture
def registry():
    """Built inside the test, after conftest cleared the shell's plugin and catalog settings."""
    return build_registry()


def _load(registry, name, split, root: Path, download=False, fmt=RGB32):
    context = SourceContext(root, download, DigestMemo(root / "digests.json"))
    return materialize(registry.dataset(name), split, fmt, context, ArtifactCache(root / "cache"))


def test_cifar10_pickles(registry, tmp_path):
    fakes.cifar(tmp_path / "cifar", hundred=False, per_class_train=3, per_class_test=2)
    train = _load(registry, "cifar10", "train", tmp_path)
    test = _load(registry, "cifar10", "test", tmp_path)
    assert train.images.shape == (150, 32, 32, 3) and test.images.shape == (20, 32, 32, 3)
    assert sorted(np.unique(train.labels)) == list(range(10))
    assert any("differ from the official release" in note for note in test.notes)


def test_cifar100_pickles_keep_fine_labels(registry, tmp_path):
    fakes.cifar(tmp_path / "cifar", hundred=True)
    train = _load(registry, "cifar100", "train", tmp_path)
    assert train.images.shape == (200, 32, 32, 3) and train.labels.max() == 99
    assert registry.dataset("cifar100").num_classes == 100


def test_cifar_pixels_are_read_in_hwc_order(registry, tmp_path):
    fakes.cifar(tmp_path / "cifar", hundred=False)
    import pickle

    with open(tmp_path / "cifar" / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        raw = pickle.load(handle)
    first = np.asarray(raw["data"][0]).reshape(3, 32, 32).transpose(1, 2, 0)
    test = _load(registry, "cifar10", "test", tmp_path)
    assert np.array_equal(test.images[0], first) and test.labels[0] == raw["labels"][0]


def test_svhn_mat(registry, tmp_path):
    fakes.svhn(tmp_path / "svhn", n=40)
    test = _load(registry, "svhn", "test", tmp_path)
    assert test.images.shape == (40, 32, 32, 3) and (test.labels == -1).all()


def test_mnist_idx_is_converted_to_rgb32(registry, tmp_path):
    fakes.mnist(tmp_path / "mnist", n=30)
    test = _load(registry, "mnist", "test", tmp_path)
    assert test.images.shape == (30, 32, 32, 3)
    assert np.array_equal(test.images[..., 0], test.images[..., 2])


@pytest.mark.parametrize("name", ["tin-crop", "tin-resize", "lsun-crop", "lsun-resize"])
def test_odin_folders(registry, tmp_path, name):
    fakes.odin(tmp_path / "odin", n=25)
    split = _load(registry, name, "test", tmp_path)
    assert split.images.shape == (25, 32, 32, 3)


def test_textures_folder_of_varied_sizes(registry, tmp_path):
    fakes.textures(tmp_path / "textures", n=20)
    assert _load(registry, "textures", "test", tmp_path).images.shape == (20, 32, 32, 3)


def test_places365_val_256(registry, tmp_path):
    fakes.places365(tmp_path / "places365", n=12)
    assert _load(registry, "places365", "test", tmp_path).images.shape == (12, 32, 32, 3)


def test_missing_files_without_download_name_the_files_and_the_fixes(registry, tmp_path):
    with pytest.raises(DataError) as caught:
        _load(registry, "svhn", "test", tmp_path, download=False)
    message = str(caught.value)
    assert "test_32x32.mat" in message and str(tmp_path / "svhn") in message
    assert "--catalog" in message and "--data-root" in message and "downloads are off" in message


def test_failed_download_is_one_clear_error(registry, tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py/test_batch.*download failed"):
        _load(registry, "cifar10", "test", tmp_path, download=True)


def test_noise_is_generated_at_the_requested_format_and_reproducible(registry, tmp_path):
    a = _load(registry, "gaussian", "test", tmp_path, fmt=ImageFormat(8, 1))
    b = _load(registry, "gaussian", "test", tmp_path / "other", fmt=ImageFormat(8, 1))
    assert a.images.shape == (10_000, 8, 8, 1) and a.content_hash == b.content_hash


def test_materialised_arrays_are_cached_by_content(registry, tmp_path):
    fakes.svhn(tmp_path / "svhn", n=10)
    cache = ArtifactCache(tmp_path / "cache")
    context = SourceContext(tmp_path, False, DigestMemo(tmp_path / "d.json"))
    first = materialize(registry.dataset("svhn"), "test", RGB32, context, cache)
    again = materialize(registry.dataset("svhn"), "test", RGB32, context, cache)
    assert cache.hits["materialise"] == 1 and first.content_hash == again.content_hash
    fakes.svhn(tmp_path / "svhn", n=12, seed=1)
    changed = materialize(registry.dataset("svhn"), "test", RGB32, context, cache)
    assert len(changed) == 12 and changed.content_hash != first.content_hash
