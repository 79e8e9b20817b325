"""What the data-hygiene check costs next to a run's extraction, measured in one process.

The check (fingerprints of every split, near-duplicate search of every pair a run checks) must
cost well under the extraction it accompanies (issue: under 10%). On a fresh cache:

1. every split of the run is decoded (not timed: both sides need it);
2. *extraction*: the base network's logits and features of the ID train and test splits and
   every OOD set (what a run with a fitted method extracts; training-time methods add more);
3. *hygiene*: the fingerprint and overlap tasks of the same run with an auxiliary set.

Each timed call plans the run and loads the decoded splits from the cache first; that time,
measured with a call that computes nothing, is subtracted from both (a run plans and decodes once).

The network's weights do not change the cost of a forward pass, so a freshly initialised network
of the preset's backbone stands in for a trained one (no training needed).

Usage (the quick preset on the offline catalog):

    python benchmarks/hygiene.py --catalog ../shared/data/catalog.toml [--preset quick] [--aux tin-aux]
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
from oodbench.models.checkpoints import build_classifier
from oodbench.registry import build_registry

HYGIENE = ("fingerprint", "overlap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--id", default="cifar10-jpeg")
    parser.add_argument("--ood", default="tin-crop-32,tin-resize-32,dtd10-32,mnist-test")
    parser.add_argument("--aux", default="tin-aux")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="oodbench-hygiene-"))
    registry = build_registry(catalogs=[args.catalog])
    backbone = registry.backbone(registry.preset(args.preset).backbone)
    weights = scratch / "weights.pt"
    torch.save(build_classifier(backbone, registry.dataset(args.id).num_classes).state_dict(), weights)
    common = {"methods": ["mahalanobis", "oe"], "id": args.id, "ood": args.ood.split(","), "preset": args.preset,
              "catalogs": [args.catalog], "cache_dir": scratch / "cache", "aux": args.aux, "checkpoint": str(weights),
              "train": False, "quiet": True}

    def timed(kinds: tuple[str, ...]) -> tuple[float, int]:
        started = time.perf_counter()
        plan, out = oodbench.outputs(lambda task: task.kind in kinds and task.group is None, **common)
        images = sum(len(out[t.inputs["split"]]) for t in plan.tasks.values() if t.kind in kinds and "split" in t.inputs)
        return time.perf_counter() - started, images

    timed(("materialise",))
    overhead, _ = timed(("materialise",))  # planning and loading the decoded splits, which each call repeats
    extraction, extracted = timed(("extract",))
    hygiene, fingerprinted = timed(HYGIENE)
    pairs = sum(1 for _ in oodbench.plan(**{k: v for k, v in common.items() if k != "quiet"}, quiet=True).tasks.query("kind == 'overlap'").itertuples())
    print(f"{args.preset} preset, {backbone.name}, {select_compute().describe()}")
    print(f"each call plans the run and loads the decoded splits: {overhead:.1f} s, subtracted below (a run does it once)")
    print(f"extraction of the base network: {extraction - overhead:.1f} s for {extracted} images")
    print(f"data hygiene: {hygiene - overhead:.1f} s ({fingerprinted} images fingerprinted, {pairs} pairs checked)")
    print(f"hygiene / extraction: {(hygiene - overhead) / (extraction - overhead):.3f} "
          f"(with the overhead in both: {hygiene / extraction:.3f})")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
