"""A real ImageNet-1K network offline: EfficientNet-Lite0 on an ImageNet-style ID set built from the shared
TinyImageNet images, every post-hoc method, with its accuracy, AUROC table, throughput and peak memory.

1. Builds ``OUT/data`` in OpenOOD's layout from the shared ``tin-train-aux.zip`` (50 training images of
   each of 170 TinyImageNet classes): ``images_largescale/tin_imagenet/<wnid>/<file>.JPEG`` (the
   archive's bytes, 64x64) and ``benchmark_imglist/tin_imagenet/{train,val,test}_tin_imagenet.txt``,
   ``path label`` per line, the label being the WordNet id's ImageNet-1K class index: its position in the
   sorted synset list (the copy timm ships, ``timm/data/_info/imagenet_synsets.txt``). Per class: the
   first ``--train`` images (by name) for fitting, the next ``--val``, the rest for testing.
2. Writes ``OUT/catalog.toml`` registering it as ``tin-imagenet`` (role id, 1000 classes,
   ``label_space = "imagenet-1k"``, so the network's published weights apply), tested against the shared
   catalog's MNIST and DTD sets and oodbench's Gaussian noise.
3. Runs ``oodbench run --backbone efficientnet-lite0`` with every post-hoc method under
   ``/usr/bin/time -v`` and prints the run's table, its images per second per stage and the peak
   resident memory of the whole process.

Needs ``pip install 'oodbench[efficientnet,timm]'`` (timm for the synset list only). Usage::

    python benchmarks/imagenet_lite.py --shared ../shared/data --out /tmp/imagenet-lite [--limit 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path

from memory import describe, measured

BENCHMARK = "tin_imagenet"


def synsets() -> list[str]:
    """ImageNet-1K's WordNet ids in class-index order (sorted), from timm's copy."""
    try:
        import timm
    except ImportError:
        sys.exit("the synset list comes with timm: pip install 'oodbench[timm]'")
    return (Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()


def build(shared: Path, out: Path, train: int, val: int) -> dict[str, int]:
    """The OpenOOD-layout folder of the ImageNet-style set; returns the images per split."""
    index = {wnid: i for i, wnid in enumerate(synsets())}
    images = out / "images_largescale"
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    with zipfile.ZipFile(shared / "tin-train-aux.zip") as archive:
        by_class: dict[str, list[str]] = {}
        for name in sorted(n for n in archive.namelist() if n.endswith(".JPEG")):
            by_class.setdefault(name.split("/")[0], []).append(name)
        for wnid, names in sorted(by_class.items()):
            if wnid not in index:
                sys.exit(f"{wnid} of tin-train-aux.zip is not an ImageNet-1K class")
            for rank, name in enumerate(names):
                target = images / BENCHMARK / name
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(name))
                split = "train" if rank < train else ("val" if rank < train + val else "test")
                lists[split].append(f"{BENCHMARK}/{name} {index[wnid]}")
    folder = out / "benchmark_imglist" / BENCHMARK
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in lists.items():
        (folder / f"{split}_{BENCHMARK}.txt").write_text("\n".join(lines) + "\n")
    return {split: len(lines) for split, lines in lists.items()}


def catalog(out: Path) -> Path:
    """A catalog of the built set (its lists over the built folder); its OOD sets come from the shared catalog."""
    path = out / "catalog.toml"
    splits = "\n".join(f'[datasets.tin-imagenet.splits.{split}]\nlist = "data/benchmark_imglist/{BENCHMARK}/{split}_{BENCHMARK}.txt"\n'
                       f'images = "data/images_largescale"\n' for split in ("train", "val", "test"))
    path.write_text(f'''[datasets.tin-imagenet]
role = "id"
num_classes = 1000
label_space = "imagenet-1k"
source = "tinyimagenet"
default_ood = ["mnist-test", "dtd10-32", "gaussian"]
description = "TinyImageNet training images (64x64) of 170 classes, labelled with their ImageNet-1K class indices"
{splits}''')
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=20, help="images per class to fit on (default 20 of 50)")
    parser.add_argument("--val", type=int, default=5, help="images per class of the val split (default 5)")
    parser.add_argument("--limit", type=int, default=1000, help="test images per set (default 1000)")
    args = parser.parse_args()
    counts = build(args.shared, args.out / "data", args.train, args.val)
    print(f"built {args.out / 'data'} in OpenOOD's layout: " + ", ".join(f"{n} {split}" for split, n in counts.items()))
    command = [sys.executable, "-m", "oodbench", "run", "--preset", "quick", "--backbone",
               "efficientnet-lite0", "--id", "tin-imagenet", "--catalog", str(catalog(args.out)),
               "--limit", str(args.limit), "--results", str(args.out / "results"), "--cache-dir", str(args.out / "cache")]
    print("running: oodbench", " ".join(command[3:]), flush=True)
    done = measured(command, {**os.environ, "PYTHONUNBUFFERED": "1", "OODBENCH_CATALOG": str(args.shared / "catalog.toml")})
    print(done.stdout)
    if done.returncode != 0:
        sys.exit(f"the run failed:\n{done.stderr[-4000:]}")
    print(f"the whole run: {describe(done)}")


if __name__ == "__main__":
    main()
