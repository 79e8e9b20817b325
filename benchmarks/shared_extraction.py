"""Cost of a full multi-method run relative to one bare forward pass, and bf16 vs fp32 accuracy.

Measured in one process, on one machine, in one go:

1. *bare*: one forward pass (logits + features) over every split the run uses (ID train, ID test,
   the OOD sets), timed without any caching or method work;
2. *run*: the 9 methods that read logits / features, with the backbone cached but extraction,
   fitting and scoring fresh (empty cache for those stages): ratio run / bare, target <= 1.3;
3. *odin*: ODIN alone (two forward passes and one backward pass per test image), reported apart;
4. the whole 10-method run in float32 and in bfloat16 autocast (fresh each), on the same
   checkpoint: AUROC difference per method (target: <= 0.002) and the speed ratio.

Usage (the quick setting on the offline catalog; trains the WRN-16-2 backbone once if no
``--checkpoint`` is given):

    python benchmarks/shared_extraction.py --catalog ../shared/data/catalog.toml [--checkpoint FILE]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import oodbench
from oodbench.config import default_home
from oodbench.data.arrays import materialize
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.batching import inference_batch_size
from oodbench.engine.cache import ArtifactCache
from oodbench.engine.device import select_compute
from oodbench.engine.estimate import Throughput, device_label
from oodbench.engine.stages.extract import forward_pass
from oodbench.hashing import DigestMemo
from oodbench.models.checkpoints import STAGE as CHECKPOINT_STAGE
from oodbench.models.checkpoints import load_file
from oodbench.registry import build_registry

METHODS = ["msp", "energy", "entropy", "maxlogit", "klmatching", "mahalanobis", "dice", "rmd", "vim"]
GRADIENT_METHODS = ["odin"]


def fresh_cache(shared: Path) -> Path:
    """A new cache directory that shares the materialised arrays and checkpoints (read-only use)."""
    root = Path(tempfile.mkdtemp(prefix="oodbench-bench-"))
    for stage in ("materialise", CHECKPOINT_STAGE):
        if (shared / stage).exists():
            (root / stage).symlink_to((shared / stage).resolve())
    (root / "digests.json").write_text((shared / "digests.json").read_text() if (shared / "digests.json").exists() else "{}")
    return root


def timed_run(**options) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    result = oodbench.run(quiet=True, **options)
    return time.perf_counter() - started, result.records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", action="append", default=[])
    parser.add_argument("--id", default="cifar10-jpeg")
    parser.add_argument("--ood", default="tin-crop-32,tin-resize-32,dtd10-32,mnist-test,gaussian,uniform")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--cache-dir", type=Path, default=default_home() / "cache")
    parser.add_argument("--checkpoint", type=Path, help="a trained backbone's state dict (default: train or reuse the preset's)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="oodbench-bench-results-"))
    common = {"id": args.id, "ood": args.ood.split(","), "preset": args.preset, "catalogs": args.catalog, "results": scratch}
    if args.checkpoint is None:
        print("preparing: data and backbone (cached after the first time) ...", flush=True)
        _, records = timed_run(methods=["msp"], cache_dir=args.cache_dir, **common)
        args.checkpoint = args.cache_dir / CHECKPOINT_STAGE / records.iloc[-1]["checkpoint"] / "model.pt"
    if not args.checkpoint.is_file():
        raise SystemExit(f"the benchmark needs a backbone's state dict; {args.checkpoint} not found")
    common.update(checkpoint=str(args.checkpoint), train=False)

    # 1. bare forward passes over every split of the run
    registry = build_registry(catalogs=args.catalog)
    preset = registry.preset(args.preset)
    backbone, id_spec = registry.backbone(preset.backbone), registry.dataset(args.id)
    fmt = ImageFormat.of(backbone)
    cache_dir = fresh_cache(args.cache_dir)
    # the arrays go to the shared cache, so that the runs below (fresh_cache links it) do not decode them again
    cache, context = ArtifactCache(args.cache_dir), SourceContext(default_home() / "data", False, DigestMemo(args.cache_dir / "digests.json"))
    splits = [materialize(id_spec, "train", fmt, context, cache, preset.train_limit),
              materialize(id_spec, "test", fmt, context, cache, preset.limit)]
    splits += [materialize(registry.dataset(name), "test", fmt, context, cache, preset.limit) for name in common["ood"]]
    compute = select_compute()
    model = compute.prepare(load_file(backbone, args.checkpoint, id_spec.num_classes)).eval()
    batch = inference_batch_size(model, backbone.name, backbone.input_size, backbone.channels, compute,
                                 Throughput(cache_dir / "throughput.json", device_label(compute)))
    common["batch_size"] = batch  # the runs below use the same batch as the bare passes
    images = sum(len(s) for s in splits)
    for split in splits:  # read the memory-mapped arrays once, so neither measurement pays for the disk
        np.asarray(split.images).sum()
    forward_pass(model, splits[1], compute, batch)  # warm-up
    started = time.perf_counter()
    for split in splits:
        forward_pass(model, split, compute, batch)
    bare = time.perf_counter() - started
    print(f"bare extraction: {images} images in {bare:.1f} s ({images / bare:.0f} img/s, batch {batch}, {compute.describe()})")

    # 2. nine logit/feature methods, fresh extraction, fit and scores
    run_seconds, _ = timed_run(methods=METHODS, cache_dir=fresh_cache(args.cache_dir), **common)
    print(f"{len(METHODS)} methods, fresh extraction: {run_seconds:.1f} s -> ratio to bare extraction {run_seconds / bare:.2f}x (target <= 1.3x)")

    # 3. the input-gradient method apart
    odin_seconds, _ = timed_run(methods=GRADIENT_METHODS, cache_dir=fresh_cache(args.cache_dir), **common)
    print(f"odin alone (2 forward + 1 backward pass per test image): {odin_seconds:.1f} s = {odin_seconds / bare:.2f}x the bare extraction")

    # 4. bf16 vs fp32 on the same checkpoint
    results, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        seconds[precision], results[precision] = timed_run(methods=METHODS + GRADIENT_METHODS, precision=precision,
                                                           cache_dir=fresh_cache(args.cache_dir), **common)
    merged = results["fp32"].merge(results["bf16"], on=["method", "ood_dataset"], suffixes=("_fp32", "_bf16"))
    merged["diff"] = (merged["auroc_bf16"] - merged["auroc_fp32"]).abs()
    per_method = merged.groupby("method").agg(auroc_fp32=("auroc_fp32", "mean"), auroc_bf16=("auroc_bf16", "mean"), max_abs_diff=("diff", "max"))
    print(f"\nbf16 vs fp32, whole 10-method run: fp32 {seconds['fp32']:.1f} s, bf16 {seconds['bf16']:.1f} s "
          f"-> bf16 is {seconds['fp32'] / seconds['bf16']:.2f}x faster")
    print("AUROC per method (mean over OOD sets) and the largest per-set difference (target <= 0.002):")
    print(per_method.to_string(float_format=lambda v: f"{v:.4f}"))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
