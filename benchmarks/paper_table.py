"""The paper-style comparison from an empty cache, timed: meant for one GPU (goal: under 10 minutes on an H100).

Trains WRN-40-2 on cifar10-jpeg (offline catalog) with the paper recipe (100 epochs, as the Outlier Exposure paper's
baseline network; ``pretrained=False``, so pytorch-ood's published weights are not loaded), then runs the MIM paper's
11 post-hoc detectors plus BAL, MIM and OE (``--aux``) on every offline OOD set with the paper preset's settings
(full test sets), and prints the ID accuracy, the AUROC table, the wall time of every stage and the total.

The published figure to compare the accuracy with: WRN-40-2 on CIFAR-10, 94.8% (Hendrycks et al., the OE paper's
baseline); cifar10-jpeg's images went through JPEG, which costs a little accuracy (``../shared/data/README.md``).

    python benchmarks/paper_table.py --catalog ../shared/data/catalog.toml --cache-dir /tmp/paper-table
    # the smallest settings, to prove it works on a CPU:
    python benchmarks/paper_table.py --catalog ../shared/data/catalog.toml --cache-dir /tmp/paper-table-cpu \\
        --backbone wrn-16-2 --epochs 1 --train-limit 2000 --limit 300 --methods msp,energy,oe
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import source_checkout  # noqa: F401  (before oodbench: this checkout, installed or not)

import oodbench

POST_HOC = ("msp", "odin", "mahalanobis", "entropy", "energy", "maxlogit", "klmatching", "dice", "rmd", "vim", "knn")
TRAINING = ("bal", "mim", "oe")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--cache-dir", type=Path, required=True, help="emptied first: the run starts from nothing")
    parser.add_argument("--results", type=Path, help="default: CACHE_DIR/results")
    parser.add_argument("--backbone", default="wrn-40-2")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--methods", default=",".join(POST_HOC + TRAINING))
    parser.add_argument("--aux", default="tin-aux")
    parser.add_argument("--limit", default="all", help="images per test split")
    parser.add_argument("--train-limit", default="all", help="images of the ID training split")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    shutil.rmtree(args.cache_dir, ignore_errors=True)
    count = lambda text: None if text == "all" else int(text)  # noqa: E731
    started = time.perf_counter()
    result = oodbench.run(methods=args.methods.split(","), id="cifar10-jpeg", preset="paper", backbone=args.backbone,
                          pretrained=False, train=True, epochs=args.epochs, aux=args.aux, limit=count(args.limit),
                          train_limit=count(args.train_limit), catalogs=[args.catalog], cache_dir=args.cache_dir,
                          data_root=args.cache_dir / "data", results=args.results or args.cache_dir / "results",
                          device=args.device)
    total = time.perf_counter() - started
    records = result.records
    print()
    print(result.table())
    print()
    accuracy = records[~records["method"].isin(TRAINING)]["id_accuracy"].dropna()  # the trained network's, not a fine-tune's
    if len(accuracy):
        print(f"ID accuracy of {args.backbone} after {args.epochs} epochs: {accuracy.iloc[0]:.4f}")
    print("wall time per stage: " + ", ".join(f"{kind} {seconds:.0f} s ({n} task(s))" for kind, (n, seconds) in result.computed.items()))
    print("images per second: " + ", ".join(f"{kind} {rate:.0f}" for kind, rate in result.rates.items())
          + "; bare: " + ", ".join(f"{kind} {rate:.0f}" for kind, rate in result.bare_rates.items()))
    print(f"total, from an empty cache: {total:.0f} s ({int((records['status'] == 'ok').sum())}/{len(records)} cells ok)")


if __name__ == "__main__":
    main()
