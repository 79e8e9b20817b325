"""Built-in dataset loaders read small fake files in the real on-disk formats, without network."""

from __future__ import annotations

from pathlib import Path

import fakes
import numpy as np
import pytest

from oodbench.api import DatasetSpec
from oodbench.data.arrays import materialize
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.cache import ArtifactCache
from oodbench.errors import DataError
from oodbench.hashing import DigestMemo, array_hash
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


def test_images_are_decoded_in_parallel_chunks_straight_to_disk_in_their_order(tmp_path, monkeypatch):
    """The first chunk here, the others on several threads, a corrupt file named: the arrays equal
    converting one image at a time."""
    import threading

    from PIL import Image

    from oodbench.data import arrays
    from oodbench.data.imglist import ImageListSource

    rng = np.random.default_rng(0)
    lines = []
    for i in range(50):
        size = (int(rng.integers(20, 70)), int(rng.integers(20, 70)))
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        lines.append(f"{i}.png {i % 10}")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    source = ImageListSource("list.txt", ".", "make them")
    context = SourceContext(tmp_path, False, DigestMemo(tmp_path / "d.json"))
    threads: set[str] = set()
    image_set = source.read(context, RGB32)
    expected = np.stack([arrays.convert(image_set.load(i), RGB32) for i in range(50)])
    original = arrays.convert

    def watched(item, fmt):
        threads.add(threading.current_thread().name)
        return original(item, fmt)

    monkeypatch.setattr(arrays, "CHUNK", 7)
    monkeypatch.setattr(arrays, "decode_threads", lambda: 3)
    monkeypatch.setattr(arrays, "PARALLEL_ABOVE_S", 0.0)
    monkeypatch.setattr(arrays, "convert", watched)
    spec = DatasetSpec(name="listed", role="ood", splits={"test": source})
    found = materialize(spec, "test", RGB32, context, ArtifactCache(tmp_path / "cache"))
    assert isinstance(found.images, np.memmap) and np.array_equal(np.asarray(found.images), expected)
    assert found.content_hash == array_hash(expected, image_set.labels)  # the file's digest is the array's
    assert len(threads) > 2 and {name.partition("_")[0] for name in threads} == {"MainThread", "decode"}
    (tmp_path / "31.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot decode image .*31.png"):
        materialize(spec, "test", RGB32, context, ArtifactCache(tmp_path / "cache2"))


def test_fast_images_stay_on_one_thread(tmp_path, monkeypatch):
    from PIL import Image

    from oodbench.data import arrays
    from oodbench.data.imglist import ImageListSource

    for i in range(20):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "list.txt").write_text("".join(f"{i}.png -1\n" for i in range(20)))
    monkeypatch.setattr(arrays, "CHUNK", 4)
    monkeypatch.setattr(arrays, "PARALLEL_ABOVE_S", 10.0)
    monkeypatch.setattr(arrays, "ThreadPoolExecutor", None)  # a pool would fail
    spec = DatasetSpec(name="listed", role="ood", splits={"test": ImageListSource("list.txt", ".", "make them")})
    found = materialize(spec, "test", RGB32, SourceContext(tmp_path, False, DigestMemo(tmp_path / "d.json")),
                        ArtifactCache(tmp_path / "cache"))
    assert found.images[:, 0, 0, 0].tolist() == list(range(20))
