"""``oodbench data verify|prepare``: check checksums, download, and fill the array cache."""

from __future__ import annotations

from oodbench.api import BackboneSpec
from oodbench.data.arrays import materialize
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.cache import ArtifactCache
from oodbench.errors import DataError
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
    fmt = ImageFormat(backbone.input_size, backbone.channels)
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
