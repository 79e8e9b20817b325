"""Near-duplicate images between two sets: perceptual fingerprints and the pairs they match.

"Near-duplicate" means the same picture after JPEG re-encoding, resizing, cropping a little
(up to about 10% of a side, resized back or not) or dropping colour. Every image is first brought
to a 32x32 grayscale picture (ITU-R 601 luma, antialiased bilinear resize), so colour and size
drop out. From it, :func:`fingerprints` computes, batched in torch on the stored uint8 arrays:

- a *descriptor*: the 8x8 block of lowest-frequency 2-D DCT-II coefficients (DC left out) of the
  picture without a 2-pixel border, scaled to unit length. Copies lie close together; it only
  proposes candidates;
- *hashes*: the 64-bit perceptual hash (pHash, Zauner 2010: each of the 8x8 lowest-frequency DCT
  coefficients of the 32x32 picture against their median, the definition of
  ``imagehash.phash``) of the picture and of 18 crops of it (2 and 4 pixels removed per axis at 9
  offsets, resized back), so a cropped copy matches one of its source's hashes within a few bits.
  (The mean of the AC coefficients, ``imagehash.phash_simple``, hashes 2x faster but lets more
  pictures of one layout through to verification: 7 pairs between tin-aux and tin-crop-32, one
  of them with a tin-aux picture that also matches an unrelated CIFAR-10 one, where the median
  finds none.)

:func:`near_duplicates` finds, for every image of the smaller set, its nearest descriptors in the
other set (an inverted-file search: k-means lists, the closest few lists probed, so the cost
grows with the sets' sizes, not their product), keeps a candidate when the closest of one
image's hashes is within :data:`THRESHOLD` bits of the other's plain hash, either way round, and
verifies it: the two 16x16 grayscale pictures, the one cropped by up to 4 pixels at any offset
(resized back), must correlate at :data:`CORRELATION` or more. Hashes alone confuse pictures of
similar layout (a dark photograph with a bright stroke and an MNIST digit); the verification does
not, and it only runs on the few candidates the hashes let through.

Why not ``imagehash`` itself: it converts one PIL image at a time (tens of microseconds each);
the arrays are already decoded, and the batched version costs a small share of a run's
extraction. ``tests/test_fingerprint.py`` plants copies of each kind among unrelated photographs
and checks recall and false pairs.

Both steps run on the device the run extracts on. On a CPU, the medians and bit packing go through numpy
(3.5x faster there than torch's median) and the search loops over the k-means lists; on an accelerator, where
such a loop of small products is bound by kernel launches, the medians are torch's ``kthvalue`` and the search
is one product of a batch of queries with every descriptor, each query's probed lists then read out of it
through a padded table of the lists' members. The two paths give the same hashes and the same candidates
(``tests/test_fingerprint.py`` runs the accelerator paths on the CPU against the CPU paths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

#: the largest Hamming distance (of 64 bits) at which two hashes may be the same picture
THRESHOLD = 8
#: the smallest correlation of the aligned 16x16 pictures at which they are: re-encoded, resized,
#: cropped or gray copies reach 0.994 and more; the closest unrelated CIFAR-10 pairs 0.92
CORRELATION = 0.97
#: crops the hashes cover: pixels removed per axis (of 32), at offsets 0, half and all of them
CROPS = (2, 4)
SIZE = 32
BLOCK = 8
BORDER = 2
#: candidates kept per image of the smaller set, and the k-means lists probed per image
NEIGHBOURS = 4
PROBES = 8
#: the most descriptors per k-means list its centroids are trained on
TRAINING_PER_LIST = 64
LUMA = (0.299, 0.587, 0.114)
#: verification searches every crop of up to this many pixels per axis, at every offset
VERIFY_CROP = 4


@dataclass(frozen=True)
class Fingerprints:
    """``descriptors``: ``N x 63`` float32 (unit rows); ``hashes``: ``N x 19`` uint64, the plain
    hash first, then those of the crops; ``centroids`` (``L x 63``) and ``lists`` (``N``): the
    k-means lists of the descriptors, the index a search of this set goes through."""

    descriptors: np.ndarray
    hashes: np.ndarray
    centroids: np.ndarray
    lists: np.ndarray

    def __len__(self) -> int:
        return len(self.hashes)


@dataclass(frozen=True)
class Pairs:
    """Near-duplicate pairs: index into the first set, into the second, their hashes' Hamming distance
    and their pictures' correlation."""

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray
    #: the verified correlation of the two pictures (best alignment, 16x16 grayscale)
    correlation: np.ndarray

    def __len__(self) -> int:
        return len(self.first)


def dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix: ``D @ x`` transforms the columns of ``x``."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return torch.tensor(matrix, dtype=torch.float32)


def resize_matrix(size: int, to: int) -> torch.Tensor:
    """``to x size``: one axis of an antialiased bilinear resize (torch's, which is separable)."""
    if size == to:
        return torch.eye(size)
    identity = torch.eye(size)[None, None]  # resizing its rows only gives the matrix
    return F.interpolate(identity, size=(to, size), mode="bilinear", antialias=True, align_corners=False)[0, 0]


def _views(size: int) -> list[torch.Tensor]:
    """One axis of each geometric view of an image whose side is ``size``, as ``32 x size`` matrices:
    the 32x32 picture, then each crop of it (3 offsets per crop size), resized back."""
    picture = resize_matrix(size, SIZE)
    views = [picture]
    for removed in CROPS:
        back = resize_matrix(SIZE - removed, SIZE)
        views += [back @ picture[offset : offset + SIZE - removed] for offset in (0, removed // 2, removed)]
    return views


@lru_cache(maxsize=8)
def _operators(size: int) -> torch.Tensor:
    """One axis of every linear view the fingerprints need, as ``8 x size`` matrices giving the lowest
    DCT frequencies of each geometric view, then of the picture without its border (the descriptor's).
    Cached per size: building them takes as long as fingerprinting a hundred images."""
    low = dct_matrix(SIZE)[:BLOCK]
    inner = dct_matrix(SIZE - 2 * BORDER)[:BLOCK] @ resize_matrix(size, SIZE)[BORDER : SIZE - BORDER]
    return torch.stack([*(low @ view for view in _views(size)), inner])


#: the hashes' views, as groups (first, last view per axis) of all combinations within the group:
#: the plain picture, then each crop size's 3 x 3 offsets
HASH_GROUPS = ((0, 1), *((1 + 3 * c, 4 + 3 * c) for c in range(len(CROPS))))
DESCRIPTOR_VIEW = 1 + 3 * len(CROPS)
HASHES = sum((last - first) ** 2 for first, last in HASH_GROUPS)


def _columns_with_luma(views: torch.Tensor, channels: int) -> torch.Tensor:
    """The column operators as ``(views * 8) x (width * channels)``, taking the luma of RGB pixels on the way."""
    flat = views.reshape(-1, views.shape[-1])
    if channels == 1:
        return flat
    return (flat[:, :, None] * torch.tensor(LUMA)).reshape(len(flat), -1)


def _float_pixels(images: np.ndarray, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":  # a writable float copy (the split may be memory-mapped): numpy converts 4x faster than torch
        return torch.from_numpy(np.array(images, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(images)).to(device).float()  # a quarter of the bytes to copy over


def _hashes_numpy(blocks: torch.Tensor) -> np.ndarray:
    """``N x views x 64`` DCT blocks -> ``N x views`` uint64 hashes: each coefficient against the block's median."""
    values = blocks.numpy()
    middle = BLOCK * BLOCK // 2 - 1  # the lower median (bits above it: those above numpy's median too)
    median = np.partition(values, middle, axis=2)[:, :, middle : middle + 1]  # 3.5x faster than torch.median
    return np.packbits(values > median, axis=2).view(">u8")[..., 0].astype(np.uint64)


#: the value of each of a hash's 64 bits, the first coefficient the highest (as ``np.packbits`` orders them)
_BIT_VALUES = torch.tensor([1 << (63 - i) if i else -(1 << 63) for i in range(BLOCK * BLOCK)], dtype=torch.int64)


def _hashes_torch(blocks: torch.Tensor) -> np.ndarray:
    """:func:`_hashes_numpy` in torch, on the blocks' device: the lower median is the 32nd smallest coefficient,
    and the bits are summed at their values in int64 (the top bit as its two's-complement weight)."""
    median = blocks.kthvalue(BLOCK * BLOCK // 2, dim=2, keepdim=True).values
    packed = ((blocks > median).long() * _BIT_VALUES.to(blocks.device)).sum(dim=2)
    return packed.cpu().numpy().view(np.uint64)


def _fingerprint_batch(images: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    pixels = _float_pixels(images, device)
    n, height, width = pixels.shape[:3]
    channels = pixels.shape[3] if pixels.ndim == 4 else 1
    rows = _operators(height).to(device)
    columns = rows if width == height else _operators(width).to(device)
    # each view's DCT block is rows[v] @ luma @ columns[v].T; the right-hand products serve every view
    luma_columns = _columns_with_luma(columns.cpu(), channels).to(device)
    right = (pixels.reshape(n * height, width * channels) @ luma_columns.T).reshape(n, height, -1)
    groups = []
    for first, last in HASH_GROUPS:  # every (row view, column view) combination of a group in one product
        count = last - first
        block = rows[first:last].reshape(-1, height) @ right[:, :, first * BLOCK : last * BLOCK]
        groups.append(block.reshape(n, count, BLOCK, count, BLOCK).transpose(2, 3).reshape(n, count * count, BLOCK * BLOCK))
    blocks = torch.cat(groups, dim=1)
    hashes = _hashes_numpy(blocks) if device.type == "cpu" else _hashes_torch(blocks)
    view = slice(DESCRIPTOR_VIEW * BLOCK, (DESCRIPTOR_VIEW + 1) * BLOCK)
    inner = (rows[DESCRIPTOR_VIEW] @ right[:, :, view]).reshape(n, -1)
    descriptors = F.normalize(inner[:, 1:], dim=1).cpu().numpy()
    return descriptors, hashes


#: pixels per fingerprinting batch: 1024 images of 32x32 keep the intermediate products in cache (a quarter faster
#: than 4096 on a CPU); larger images go in proportionally fewer (20 of 224x224), which bounds the memory too
BATCH_PIXELS = 1024 * 32 * 32


def fingerprints(images: np.ndarray, device: torch.device | str = "cpu") -> Fingerprints:
    """The descriptors, hashes and descriptor index of ``N x H x W [x C]`` uint8 images (any size, gray or RGB),
    :data:`BATCH_PIXELS` pixels at a time (whatever the images' size, a batch of RGB images is 12 MB as float32),
    computed on ``device``."""
    device = torch.device(device)
    batch = max(1, BATCH_PIXELS // (images.shape[1] * images.shape[2])) if images.ndim >= 3 else 1
    parts = [_fingerprint_batch(images[start : start + batch], device) for start in range(0, len(images), batch)]
    if not parts:
        return Fingerprints(np.zeros((0, BLOCK * BLOCK - 1), np.float32), np.zeros((0, HASHES), np.uint64),
                            np.zeros((0, BLOCK * BLOCK - 1), np.float32), np.zeros(0, np.int64))
    descriptors = np.concatenate([p[0] for p in parts])
    centroids, lists = _kmeans(torch.from_numpy(descriptors).to(device), max(1, min(1024, round(math.sqrt(len(descriptors))))))
    return Fingerprints(descriptors, np.concatenate([p[1] for p in parts]), centroids.cpu().numpy(), lists.cpu().numpy())


def _kmeans(points: torch.Tensor, lists: int, iterations: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids (unit rows) of spherical k-means on unit ``points``, and each point's list. The
    centroids are trained on :data:`TRAINING_PER_LIST` points per list at most (as inverted-file
    indexes usually are: more points move them little and cost in proportion)."""
    order = torch.randperm(len(points), generator=torch.Generator().manual_seed(0)).to(points.device)
    sample = points[order[: TRAINING_PER_LIST * lists]]
    centroids = sample[:lists].clone()
    for _ in range(iterations):
        assignment = (sample @ centroids.T).argmax(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, sample)
        empty = sums.norm(dim=1) == 0
        centroids = torch.where(empty[:, None], centroids, F.normalize(sums, dim=1))
    return centroids, (points @ centroids.T).argmax(dim=1)


def _candidates(queries: np.ndarray, base: Fingerprints) -> tuple[np.ndarray, np.ndarray]:
    """(query index, base index) of each query's :data:`NEIGHBOURS` nearest descriptors among those
    in the :data:`PROBES` lists of ``base`` whose centroids are closest to it, per query most similar first."""
    q, centroids = torch.from_numpy(queries), torch.from_numpy(base.centroids)
    lists = len(centroids)
    members = torch.from_numpy(np.argsort(base.lists, kind="stable"))  # base indices, list by list
    descriptors = torch.from_numpy(base.descriptors)[members]
    bounds = np.searchsorted(base.lists[members.numpy()], np.arange(lists + 1)).tolist()
    probes = min(PROBES, lists)
    probed = (q @ centroids.T).topk(probes, dim=1).indices.reshape(-1)  # row q * probes + p: query q's p-th list
    by_list = torch.argsort(probed, stable=True)  # those rows, list by list
    asking_bounds = np.searchsorted(probed[by_list].numpy(), np.arange(lists + 1)).tolist()
    # each probed list's nearest members, per row; one top-k over a query's rows then merges its lists
    similarity = torch.full((len(probed), NEIGHBOURS), -math.inf)
    nearest = torch.zeros((len(probed), NEIGHBOURS), dtype=torch.int64)
    for index in range(lists):
        start, end = bounds[index], bounds[index + 1]
        rows = by_list[asking_bounds[index] : asking_bounds[index + 1]]
        if start == end or len(rows) == 0:
            continue
        top = (q[rows // probes] @ descriptors[start:end].T).topk(min(NEIGHBOURS, end - start), dim=1)
        similarity[rows, : top.values.shape[1]] = top.values
        nearest[rows, : top.values.shape[1]] = members[start + top.indices]
    best = similarity.reshape(len(q), -1).topk(min(NEIGHBOURS, probes * NEIGHBOURS), dim=1)
    found = best.values > -math.inf
    base_index = nearest.reshape(len(q), -1).gather(1, best.indices)
    query_index = torch.arange(len(q))[:, None].expand_as(base_index)
    return query_index[found].numpy(), base_index[found].numpy()


#: similarities a batch of the accelerator search holds (256 MiB of float32)
SEARCH_VALUES = 2**26


def _candidates_batched(queries: np.ndarray, base: Fingerprints, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_candidates` without its loop over the lists, for accelerators: each batch of queries against every
    descriptor of ``base`` in one product, then each query's probed lists read out of it as rows of a table of the
    lists' members (padded to the longest with -1), each list's :data:`NEIGHBOURS` best and the best of those."""
    q = torch.from_numpy(queries).to(device)
    descriptors, centroids = torch.from_numpy(base.descriptors).to(device), torch.from_numpy(base.centroids).to(device)
    lists, probes = len(centroids), min(PROBES, len(centroids))
    members = np.argsort(base.lists, kind="stable")  # base indices, list by list, as the loop reads them
    sizes = np.bincount(base.lists, minlength=lists)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    table = np.full((lists, max(int(sizes.max()), NEIGHBOURS)), -1, dtype=np.int64)
    table[base.lists[members], np.arange(len(members)) - starts[base.lists[members]]] = members
    table = torch.from_numpy(table).to(device)
    probed = (q @ centroids.T).topk(probes, dim=1).indices
    chunk = max(1, SEARCH_VALUES // max(len(descriptors), probes * table.shape[1]))
    query_parts, base_parts = [], []
    for start in range(0, len(q), chunk):
        rows = table[probed[start : start + chunk]]  # C x probes x longest base indices
        similarity = (q[start : start + chunk] @ descriptors.T).gather(1, rows.clamp(min=0).flatten(1)).view(rows.shape)
        similarity = similarity.masked_fill(rows < 0, -math.inf)
        top = similarity.topk(NEIGHBOURS, dim=2)  # each probed list's nearest, as the loop's rows
        nearest = rows.gather(2, top.indices)
        best = top.values.flatten(1).topk(min(NEIGHBOURS, probes * NEIGHBOURS), dim=1)
        found = best.values > -math.inf
        base_index = nearest.flatten(1).gather(1, best.indices)
        query_index = torch.arange(start, start + len(rows), device=device)[:, None].expand_as(base_index)
        query_parts.append(query_index[found].cpu())
        base_parts.append(base_index[found].cpu())
    return torch.cat(query_parts).numpy(), torch.cat(base_parts).numpy()


def hash_distance(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Hamming distance per pair of hash rows (``M x 19`` each): the closest of either image's hashes
    (crops included) to the other's plain hash."""
    one_way = np.bitwise_count(first ^ second[:, :1]).min(axis=1)
    other_way = np.bitwise_count(second ^ first[:, :1]).min(axis=1)
    return np.minimum(one_way, other_way).astype(np.int64)


def near_duplicates(first: Fingerprints, second: Fingerprints, first_images: np.ndarray, second_images: np.ndarray,
                    device: torch.device | str = "cpu") -> Pairs:
    """Near-duplicate pairs between two sets (their fingerprints and their images), sorted by index; the candidate
    search on ``device`` (the verification of the few candidates stays on the CPU)."""
    device = torch.device(device)
    swap = len(first) > len(second)
    queries, base = (second, first) if swap else (first, second)
    if len(queries) == 0 or len(base) == 0:
        empty = np.zeros(0, np.int64)
        return Pairs(empty, empty, empty, np.zeros(0, np.float32))
    qi, bi = _candidates(queries.descriptors, base) if device.type == "cpu" else _candidates_batched(queries.descriptors, base, device)
    a, b = (bi, qi) if swap else (qi, bi)
    distance = hash_distance(first.hashes[a], second.hashes[b])
    close = distance <= THRESHOLD
    a, b, distance = a[close], b[close], distance[close]
    similarity = correlation(first_images[a], second_images[b]) if len(a) else np.zeros(0, np.float32)
    same = similarity >= CORRELATION
    order = np.lexsort((b[same], a[same]))
    return Pairs(a[same][order], b[same][order], distance[same][order], similarity[same][order])


def _luma(images: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(np.array(images)).float()
    if pixels.ndim == 4 and pixels.shape[-1] == 3:
        return pixels @ torch.tensor(LUMA)
    return pixels[..., 0] if pixels.ndim == 4 else pixels


def _aligned_views(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every crop of up to 4 pixels per axis (of 32) at every offset, resized back and then to 16x16:
    ``(row view, column view)`` index pairs of the dense set of alignments verification searches."""
    picture = resize_matrix(size, SIZE)
    down = resize_matrix(SIZE, SIZE // 2)
    axis, pairs = [down @ picture], [(0, 0)]
    for removed in range(1, VERIFY_CROP + 1):
        back = down @ resize_matrix(SIZE - removed, SIZE)
        start = len(axis)
        axis += [back @ picture[offset : offset + SIZE - removed] for offset in range(removed + 1)]
        pairs += [(start + top, start + left) for top in range(removed + 1) for left in range(removed + 1)]
    return torch.stack(axis), torch.tensor(pairs)


def _view_pictures(images: np.ndarray, dense: bool) -> torch.Tensor:
    """``M x views x 256``: the plain picture (``dense=False``) or every alignment of each image at
    16x16 grayscale (fine detail and JPEG noise averaged out), centred and scaled to unit norm."""
    luma = _luma(images)
    rows, pairs = _aligned_views(luma.shape[1])
    columns = rows if luma.shape[2] == luma.shape[1] else _aligned_views(luma.shape[2])[0]
    pairs = pairs if dense else pairs[:1]
    pictures = torch.einsum("vih,mhw,vjw->mvij", rows[pairs[:, 0]], luma, columns[pairs[:, 1]]).flatten(2)
    centred = pictures - pictures.mean(dim=2, keepdim=True)
    return F.normalize(centred, dim=2)


def _best_alignment(first: np.ndarray, second: np.ndarray, dense: bool) -> torch.Tensor:
    a, b = _view_pictures(first, dense), _view_pictures(second, dense)
    one_way = (a * b[:, :1]).sum(dim=2).max(dim=1).values
    other_way = (b * a[:, :1]).sum(dim=2).max(dim=1).values
    return torch.maximum(one_way, other_way)


def correlation(first: np.ndarray, second: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For aligned pairs of images (``first[i]`` with ``second[i]``): the largest correlation of one
    image's view with the other's plain picture, either way round, at 16x16 grayscale. Pairs that
    correlate as they are skip the search over crops."""
    best = np.zeros(len(first), np.float32)
    for start in range(0, len(first), chunk):
        part = slice(start, start + chunk)
        plain = _best_alignment(first[part], second[part], dense=False).numpy()
        search = np.flatnonzero(plain < CORRELATION)
        if len(search):
            plain[search] = _best_alignment(first[part][search], second[part][search], dense=True).numpy()
        best[part] = plain
    return best
