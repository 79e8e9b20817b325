"""Attack throughput and strength: PGD steps per second against a bare gradient loop, and whether
running the attack in the engine's precision (bf16 on this CPU) keeps it as strong as in fp32.

Measured in one process, on one machine, in one go:

1. *bare*: forward + input-gradient passes of the backbone over batches already on the device
   (the upper bound of a PGD step's cost);
2. *attack*: the engine's attack stage (``--attack``) on fresh caches: gradient steps per second,
   ratio to the bare loop;
3. the same weights evaluated and attacked in float32: clean and attacked AUROC per method in both
   precisions and the largest difference of the attacked ones (the attack keeps its strength when
   it is small).

Usage (the smoke preset on the offline catalog; ``--preset quick`` for the CPU-sized backbone):

    python benchmarks/attacks.py --catalog ../shared/data/catalog.toml [--preset smoke] [--attack atom]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import source_checkout  # noqa: F401  (before oodbench: this checkout, installed or not)
import torch

import oodbench
from oodbench.engine.device import select_compute
from oodbench.models.checkpoints import STAGE as CHECKPOINT_STAGE
from oodbench.models.checkpoints import build_classifier
from oodbench.registry import build_registry

METHODS = ["msp", "odin", "energy", "mahalanobis"]


def bare_gradient_rate(preset: str, catalog: str, compute, batch: int = 128, repeats: int = 10) -> float:
    """Forward + backward-to-the-input passes per second on random pixels already on the device."""
    registry = build_registry(catalogs=[catalog])
    backbone = registry.backbone(registry.preset(preset).backbone)
    model = compute.prepare(build_classifier(backbone, 10)).eval()
    pixels = torch.rand(batch, backbone.channels, backbone.input_size, backbone.input_size, device=compute.device)

    def step() -> None:
        x = pixels.clone().requires_grad_(True)
        with compute.autocast():
            score = -model(x).float().softmax(1).max(1).values.sum()
        torch.autograd.grad(score, x)

    step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return batch * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--id", default="cifar10-jpeg")
    parser.add_argument("--ood", default="tin-crop-32,mnist-test")
    parser.add_argument("--attack", default="atom")
    args = parser.parse_args()
    compute = select_compute()
    scratch = Path(tempfile.mkdtemp(prefix="oodbench-attacks-"))
    common = {"methods": METHODS, "id": args.id, "ood": args.ood.split(","), "preset": args.preset, "catalogs": [args.catalog],
              "attacks": [args.attack], "quiet": True}
    bare = bare_gradient_rate(args.preset, args.catalog, compute)
    trained = oodbench.run(methods=["msp"], id=args.id, ood=common["ood"], preset=args.preset, catalogs=[args.catalog],
                           cache_dir=scratch / "cache", results=scratch / "results", quiet=True)
    checkpoint = scratch / "cache" / CHECKPOINT_STAGE / trained.records["checkpoint"].iloc[0] / "model.pt"
    results = {}  # the same weights, evaluated and attacked in both precisions
    for precision in ("auto", "fp32"):
        results[precision] = oodbench.run(precision=precision, checkpoint=str(checkpoint), train=False,
                                          cache_dir=scratch / f"cache-{precision}", results=scratch / f"results-{precision}",
                                          **common)
    fast = results["auto"]
    steps = fast.records["attack_passes"].fillna(0).sum()
    attack_seconds = fast.records.loc[fast.records["attack"] != "", "score_time_s"].sum()
    print(f"{args.preset} preset, {compute.describe()}, attack {args.attack}")
    print(f"bare forward + input-gradient loop: {bare:.0f} passes/s")
    print(f"engine attack stage: {steps / attack_seconds:.0f} gradient steps/s ({steps:.0f} steps in {attack_seconds:.1f} s), "
          f"{steps / attack_seconds / bare:.2f}x the bare loop")
    keys = ["method", "ood_dataset", "attack"]
    merged = fast.records.merge(results["fp32"].records, on=keys, suffixes=(f"_{compute.precision}", "_fp32"))
    merged["attack"] = merged["attack"].map(lambda a: a.split(":")[0] or "natural")
    table = merged.pivot_table(index="method", columns="attack", values=[f"auroc_{compute.precision}", "auroc_fp32"])
    print("\nAUROC, mean over OOD sets (natural = clean inputs):")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    attacked = merged[merged["attack"] != "natural"]
    difference = (attacked[f"auroc_{compute.precision}"] - attacked["auroc_fp32"]).abs()
    print(f"\nlargest |attacked AUROC {compute.precision} - attacked AUROC fp32|: {difference.max():.4f}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
