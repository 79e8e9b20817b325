"""Near-duplicate detection: copies of four kinds planted among unrelated photographs are found,
and unrelated pairs are not."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from oodbench.data.fingerprint import CORRELATION, THRESHOLD, fingerprints, hash_distance, near_duplicates

PER_KIND = 50
KINDS = ("jpeg", "resize", "crop", "gray")


@pytest.fixture(scope="module")
def photographs(request) -> np.ndarray:
    """2,400 CIFAR-10 test images (32x32 RGB photographs) from the offline catalog, in random order."""
    catalog = request.getfixturevalue("catalog")
    with zipfile.ZipFile(catalog.parent / "cifar10-jpeg-test.zip") as archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        chosen = np.random.default_rng(0).permutation(len(names))[:2400]
        return np.stack([np.array(Image.open(io.BytesIO(archive.read(names[i]))).convert("RGB")) for i in chosen])


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image)


def copy_of(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``image`` re-encoded, resized, cropped a little or without colour, back as 32x32 RGB (as a
    split is stored after materialisation)."""
    if kind == "jpeg":
        buffer = io.BytesIO()
        _pil(image).save(buffer, "JPEG", quality=int(rng.integers(30, 76)))
        return np.array(Image.open(buffer).convert("RGB"))
    if kind == "resize":
        size = int(rng.integers(20, 29))
        return np.array(_pil(image).resize((size, size), Image.BICUBIC).resize((32, 32), Image.BICUBIC))
    if kind == "crop":
        removed = int(rng.integers(1, 4))  # up to ~10% of a side
        top, left = rng.integers(0, removed + 1, 2)
        cropped = image[top : top + 32 - removed, left : left + 32 - removed]
        return np.array(_pil(cropped).resize((32, 32), Image.BILINEAR))
    return np.array(_pil(image).convert("L").convert("RGB"))


def test_planted_copies_are_found_and_unrelated_pairs_are_not(photographs):
    rng = np.random.default_rng(1)
    originals, first_unrelated, second_unrelated = photographs[:200], photographs[200:1200], photographs[1200:2400]
    copies = np.stack([copy_of(image, KINDS[i // PER_KIND], rng) for i, image in enumerate(originals)])
    first = np.concatenate([first_unrelated, originals])  # originals at 1000..1199
    second = np.concatenate([copies, second_unrelated])  # copy i of original 1000 + i
    pairs = near_duplicates(fingerprints(first), fingerprints(second), first, second)
    planted = set(zip(range(1000, 1200), range(200), strict=True))
    found = set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    for k, kind in enumerate(KINDS):
        kind_pairs = {(1000 + i, i) for i in range(k * PER_KIND, (k + 1) * PER_KIND)}
        recall = len(kind_pairs & found) / PER_KIND
        assert recall >= 0.9, f"{kind}: recall {recall:.2f}"
    false_pairs = len(found - planted)
    unrelated_pairs = len(first) * len(second) - len(planted)
    assert false_pairs <= unrelated_pairs / 10_000, f"{false_pairs} false pairs among {unrelated_pairs} unrelated pairs"
    assert (pairs.distance <= THRESHOLD).all() and (pairs.correlation >= CORRELATION).all()


def test_digits_and_photographs_of_similar_layout_are_not_duplicates(photographs, catalog):
    """Hashes alone match some MNIST digits to dark photographs with a bright stroke; verification does not."""
    with zipfile.ZipFile(catalog.parent / "mnist-test.zip") as archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))[:3000]
        digits = np.stack([np.array(Image.open(io.BytesIO(archive.read(n)))) for n in names])  # 28 x 28 gray
    prints, photo_prints = fingerprints(digits), fingerprints(photographs)
    assert len(near_duplicates(prints, photo_prints, digits, photographs)) == 0


def test_a_grayscale_set_of_another_size_matches_the_rgb_set_it_came_from(photographs):
    rgb = photographs[:300]
    gray = np.stack([np.array(_pil(image).convert("L").resize((28, 28), Image.BILINEAR)) for image in photographs[300:400]])
    copies = np.stack([np.array(_pil(image).convert("L").resize((28, 28), Image.BILINEAR)) for image in rgb[:100]])
    others = np.concatenate([copies, gray])  # N x 28 x 28, no channel axis
    pairs = near_duplicates(fingerprints(rgb), fingerprints(others), rgb, others)
    found = set(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
    assert len(found & {(i, i) for i in range(100)}) >= 95 and len(found - {(i, i) for i in range(100)}) <= 3


def test_hash_distance_takes_the_closest_crop_hash_in_either_direction():
    plain = np.array([[0b0000, 0b1111, 0b0001]], dtype=np.uint64)  # a plain hash, then two crop hashes
    other = np.array([[0b0011, 0b1111_0000, 0b1111_0000]], dtype=np.uint64)
    assert hash_distance(plain, other).tolist() == [1]  # plain's crop 0b0001 vs other's plain 0b0011
    assert hash_distance(other, plain).tolist() == [1]


def test_empty_sets_have_no_pairs():
    none = np.zeros((0, 32, 32, 3), np.uint8)
    some = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    assert len(near_duplicates(fingerprints(none), fingerprints(some), none, some)) == 0
    assert len(near_duplicates(fingerprints(some), fingerprints(none), some, none)) == 0


# -- the accelerator paths, run on the CPU against the CPU paths ---------------------------------------------------

def test_the_accelerator_hashes_are_the_cpu_hashes_bit_for_bit(photographs, monkeypatch):
    from oodbench.data import fingerprint

    blocks = torch.randint(-3, 4, (500, 19, 64)).float()  # many ties with the median
    blocks[:, :, 0] = torch.randn(500, 19) * 100  # and the top bit both ways
    assert np.array_equal(fingerprint._hashes_torch(blocks), fingerprint._hashes_numpy(blocks))
    plain = fingerprints(photographs)
    monkeypatch.setattr(fingerprint, "_hashes_numpy", fingerprint._hashes_torch)
    assert np.array_equal(fingerprints(photographs).hashes, plain.hashes)


def _pairs(candidates) -> set[tuple[int, int]]:
    return set(zip(candidates[0].tolist(), candidates[1].tolist(), strict=True))


def test_the_accelerator_search_finds_the_cpu_candidates(photographs, monkeypatch):
    from oodbench.data import fingerprint

    rng = np.random.default_rng(3)
    first = photographs[:1600]
    copies = np.stack([copy_of(first[i], KINDS[i % 4], rng) for i in range(0, 1600, 8)])
    second = np.concatenate([photographs[1600:], copies])
    base, queries = fingerprints(first), fingerprints(second)
    batched = fingerprint._candidates_batched(queries.descriptors, base, torch.device("cpu"))
    looped = fingerprint._candidates(queries.descriptors, base)
    assert len(looped[0]) == len(queries) * fingerprint.NEIGHBOURS and _pairs(batched) == _pairs(looped)
    noise = fingerprints(rng.integers(0, 256, (3000, 32, 32, 3), dtype=np.uint8))  # lists of every size
    assert _pairs(fingerprint._candidates_batched(base.descriptors[:300], noise, torch.device("cpu"))) == \
        _pairs(fingerprint._candidates(base.descriptors[:300], noise))
    plain = near_duplicates(base, queries, first, second)
    monkeypatch.setattr(fingerprint, "_candidates", lambda q, b: fingerprint._candidates_batched(q, b, torch.device("cpu")))
    found = near_duplicates(base, queries, first, second)
    assert len(plain) >= len(copies) * 0.9 and all(np.array_equal(getattr(found, f), getattr(plain, f)) for f in ("first", "second", "distance"))


def _decoded(archive_path, limit=None) -> np.ndarray:
    with zipfile.ZipFile(archive_path) as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png")))[:limit]
        return np.stack([np.array(Image.open(io.BytesIO(archive.read(n))).convert("RGB").resize((32, 32))) for n in names])


def test_the_accelerator_paths_on_the_quick_splits(catalog, monkeypatch):
    """CIFAR-10's 50,000 training images against the TinyImageNet auxiliary set (the largest pair a quick run checks):
    the same hashes and candidates from both paths."""
    from oodbench.data import fingerprint

    train, aux = _decoded(catalog.parent / "cifar10-jpeg-train.zip"), _decoded(catalog.parent / "tin-train-aux.zip")
    prints = [fingerprints(train), fingerprints(aux)]
    queries, base = prints if len(train) < len(aux) else prints[::-1]
    assert _pairs(fingerprint._candidates_batched(queries.descriptors, base, torch.device("cpu"))) == \
        _pairs(fingerprint._candidates(queries.descriptors, base))
    monkeypatch.setattr(fingerprint, "_hashes_numpy", fingerprint._hashes_torch)
    assert np.array_equal(fingerprints(aux).hashes, prints[1].hashes)
