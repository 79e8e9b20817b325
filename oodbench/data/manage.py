"""``oodbench data verify|prepare|overlap``: check checksums, download, fill the array cache, and
find near-duplicates between two sets."""

from __future__ import annotations

import time

from oodbench.api import BackboneSpec, DatasetSpec
from oodbench.data.arrays import evaluation_split, materialize, training_split
from oodbench.data.fingerprint import CORRELATION, THRESHOLD
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.cache import ArtifactCache
from oodbench.engine.context import EngineContext
from oodbench.engine.device import select_compute
from oodbench.engine.estimate import Throughput
from oodbench.engine.executors.local import LocalExecutor
from oodbench.engine.plan import Plan
from oodbench.engine.stages.fingerprint import plan_fingerprint
from oodbench.engine.stages.materialise import plan_split
from oodbench.engine.stages.overlap import KIND as OVERLAP
from oodbench.engine.stages.overlap import plan_overlap
from oodbench.errors import ConfigError, DataError
from oodbench.hashing import DigestMemo
from oodbench.registry import Registry


def _context(paths: dict) -> tuple[SourceContext, ArtifactCache]:
    context = SourceContext(paths["data_root"], paths["download"], DigestMemo(paths["cache_dir"] / "digests.json"))
    return context, ArtifactCache(paths["cache_dir"])


def verify(registry: Registry, names: list[str], paths: dict) -> int:
    """Check every split's files against their checksums without downloading; 1 if any fails."""
    context, _ = _context({**paths, "download": False})
    failures = 0
    for name in names:
        spec = registry.dataset(name)
        for split, source in spec.splits.items():
            try:
                official = source.verify(context).get("official")
                remark = {True: "  (official release, md5 verified)", False: "  (readable, but not the official release files)"}.get(official, "")
                print(f"ok       {name}/{split}: {source.describe()}{remark}")
            except DataError as error:
                failures += 1
                print(f"FAILED   {name}/{split}: {error.message}" + (f"\n         fix: {error.fix}" if error.fix else ""))
    return 1 if failures else 0


def prepare(registry: Registry, names: list[str], backbone: BackboneSpec, paths: dict) -> int:
    """Download (when allowed) and materialise every split at ``backbone``'s input format."""
    context, cache = _context(paths)
    fmt = ImageFormat.of(backbone)
    failures = 0
    for name in names:
        spec = registry.dataset(name)
        for split in spec.splits:
            try:
                arrays = materialize(spec, split, fmt, context, cache)
                print(f"ready    {name}/{split}: {len(arrays)} images at {fmt.describe()} (content {arrays.content_hash[:12]})")
            except DataError as error:
                failures += 1
                print(f"FAILED   {name}/{split}: {error.message}" + (f"\n         fix: {error.fix}" if error.fix else ""))
    return 1 if failures else 0


def _split_of(registry: Registry, name: str) -> tuple[DatasetSpec, str]:
    """``NAME`` (its evaluation split; an auxiliary set's training split) or ``NAME/SPLIT``."""
    dataset, _, split = name.partition("/")
    spec = registry.dataset(dataset)
    split = split or (training_split(spec) if spec.role == "aux" else evaluation_split(spec))
    if split not in spec.splits:
        raise ConfigError(f"dataset '{dataset}' has no split '{split}'", f"use one of: {', '.join(spec.splits)}")
    return spec, split


def overlap(registry: Registry, first: str, second: str, backbone: BackboneSpec, paths: dict) -> int:
    """Print the near-duplicate pairs between two splits (``NAME`` or ``NAME/SPLIT``): the count, the
    thresholds, a shared source and the closest pairs. Fingerprints are cached per split and the
    result per pair, as in a run."""
    context, cache = _context(paths)
    ctx = EngineContext(select_compute("cpu", "fp32", False), cache, context,
                        Throughput(paths["cache_dir"] / "throughput.json", "cpu"), None)
    fmt = ImageFormat.of(backbone)
    plan = Plan({}, [], {})
    planned = []
    for name in (first, second):
        spec, split = _split_of(registry, name)
        task, split_plan = plan_split(ctx, spec, split, fmt, None, paths["download"])
        plan.add(task)
        planned.append((split_plan, plan.tasks[plan.add(plan_fingerprint(ctx, split_plan))]))
    (a, a_prints), (b, b_prints) = planned
    check = plan.add(plan_overlap(ctx, a, b, a_prints, b_prints))
    started = time.perf_counter()
    outcomes = LocalExecutor().execute(plan, ctx)
    found, arrays = outcomes[check].value, (outcomes[a.task].value, outcomes[b.task].value)
    print(f"near-duplicates {a.label} ({len(arrays[0])} images) ~ {b.label} ({len(arrays[1])} images): {found.pairs} pair(s)")
    print(f"  a pair: perceptual hashes within {THRESHOLD} of 64 bits (the images or crops of up to 4 of 32 pixels), "
          f"verified by a correlation of the aligned 16x16 grayscale pictures of at least {CORRELATION}")
    if found.shared_source:
        print(f"  shared source: both declare '{found.shared_source}': drawn from one collection, they may overlap in content "
              "(other pictures of the same classes, scenes or photographers) even without duplicates")
    for example in found.examples:
        print(f"  {a.label} #{example['first_index']} ~ {b.label} #{example['second_index']}: "
              f"{example['distance']} bits, correlation {example['correlation']}")
    if found.pairs > len(found.examples):
        print(f"  every pair: {cache.directory(OVERLAP, plan.tasks[check].key) / 'pairs.npy'} (first index, second index, bits)")
    print(f"  {time.perf_counter() - started:.1f} s (fingerprints cached per split, the result per pair)")
    return 0
