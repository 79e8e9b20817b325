"""What the data-hygiene check costs next to a run's extraction, measured in one process.

The check (fingerprints of every split, near-duplicate search of every pair a run checks) must
cost well under the extraction it accompanies (issue: under 10%). On a fresh cache:

1. every split of the run is decoded (not timed: both sides need it);
2. *extraction*: the base network's logits and features of the ID train and test splits and
   every OOD set (what a run with a fitted method extracts; training-time methods add more);
3. *hygiene*: the fingerprint and overlap tasks of the same run with an auxiliary set.

Each timed call plans the run and loads the decoded splits from the cache first; that time,
measured with a call that computes nothing, is subtracted from both (a run plans and decodes once).
Extraction and hygiene alternate ``--repeats`` times, each on a fresh cache of its own stages, and
the ratio is that of the fastest of each (the runs least disturbed by anything else on the machine;
all timings are printed).

The network's weights do not change the cost of a forward pass, so a freshly initialised network
of the preset's backbone stands in for a trained one (no training needed).

Usage (the quick preset on the offline catalog):

    python benchmarks/hygiene.py --catalog ../shared/data/catalog.toml [--preset quick] [--aux tin-aux] [--repeats 3]

On a GPU machine, after ``gpu_check.py``'s calls (which leave every split materialised in its cache
directory), ``--cache-dir`` reuses those arrays, so no archive needs to be there again.
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
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, help="materialised arrays to reuse (gpu_check.py's --cache-dir): "
                        "its extraction and hygiene artifacts are replaced; default: a temporary directory")
    args = parser.parse_args()
    scratch = args.cache_dir or Path(tempfile.mkdtemp(prefix="oodbench-hygiene-"))
    scratch.mkdir(parents=True, exist_ok=True)
    registry = build_registry(catalogs=[args.catalog])
    backbone = registry.backbone(registry.preset(args.preset).backbone)
    weights = scratch / "hygiene-benchmark-weights.pt"
    torch.save(build_classifier(backbone, registry.dataset(args.id).num_classes).state_dict(), weights)
    common = {"methods": ["mahalanobis", "oe"], "id": args.id, "ood": args.ood.split(","), "preset": args.preset,
              "catalogs": [args.catalog], "cache_dir": scratch, "data_root": scratch / "data", "aux": args.aux, "checkpoint": str(weights),
              "train": False, "quiet": True}

    def timed(kinds: tuple[str, ...], fresh: bool = True) -> tuple[float, int]:
        for kind in kinds if fresh else ():  # the stages timed start from an empty cache
            shutil.rmtree(scratch / kind, ignore_errors=True)
        started = time.perf_counter()
        plan, out = oodbench.outputs(lambda task: task.kind in kinds and task.group is None, **common)
        images = sum(len(out[t.inputs["split"]]) for t in plan.tasks.values() if t.kind in kinds and "split" in t.inputs)
        return time.perf_counter() - started, images

    timed(("materialise",), fresh=False)
    overhead = min(timed(("materialise",), fresh=False)[0] for _ in range(args.repeats))  # planning, loading the splits
    extractions, hygienes = [], []
    for _ in range(args.repeats):
        extractions.append(timed(("extract",)))
        hygienes.append(timed(HYGIENE))
    (extraction, extracted), (hygiene, fingerprinted) = min(extractions), min(hygienes)
    pairs = sum(1 for _ in oodbench.plan(**{k: v for k, v in common.items() if k != "quiet"}, quiet=True).tasks.query("kind == 'overlap'").itertuples())

    def listed(runs: list[tuple[float, int]]) -> str:
        return ", ".join(f"{seconds - overhead:.2f}" for seconds, _ in runs)

    print(f"{args.preset} preset, {backbone.name}, {select_compute().describe()}")
    print(f"each call plans the run and loads the decoded splits: {overhead:.2f} s, subtracted below (a run does it once)")
    print(f"extraction of the base network: {extraction - overhead:.2f} s for {extracted} images (runs: {listed(extractions)} s)")
    print(f"data hygiene: {hygiene - overhead:.2f} s ({fingerprinted} images fingerprinted, {pairs} pairs checked; "
          f"runs: {listed(hygienes)} s)")
    print(f"hygiene / extraction, fastest of {args.repeats} each: {(hygiene - overhead) / (extraction - overhead):.3f} "
          f"(with the overhead in both: {hygiene / extraction:.3f})")
    if args.cache_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
