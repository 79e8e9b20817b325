"""The streamed large-image path against a bare loop, and its peak memory on an ImageNet-validation-sized set.

A synthetic folder of ``--images`` JPEGs of 375x500 pixels (the ImageNet validation size class; smooth
random pictures, about 20 KB each) is listed in OpenOOD's format and registered by a catalog as an ID
set of ImageNet-1K's label space, so EfficientNet-Lite0's packaged weights (a small backbone: 4.7M
parameters) classify it. Then, in one run of this script:

1. **ratio**: on the first ``--compare`` images, oodbench's path (materialise: parallel decode, the
   weights' own resize and crop, chunked writes to a memory-mapped array; extract: batches streamed
   from it through the network) against a bare loop over the same files (PIL decode, the same
   torchvision transform, ``model(x)`` in batches of 64, the same precision), both from a cold start;
   printed as images per second and their ratio (model loading and imports left out of both);
2. **peak memory**: ``oodbench`` materialises and extracts all ``--images`` in a child process under
   ``/usr/bin/time -v``; its maximum resident set size is printed next to what the design bounds it by
   (one chunk of 256 images per decoding thread, one inference batch, the network, the libraries).

Needs ``pip install 'oodbench[efficientnet]'``. Usage::

    python benchmarks/large_images.py --out /tmp/large [--images 50000] [--compare 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from memory import Measured, describe, measured
from PIL import Image

WIDTH, HEIGHT = 500, 375
#: the inference batch of both paths
BATCH = 64


def _picture(index: int) -> Image.Image:
    """A smooth random 500x375 picture: low-frequency noise upsampled, so it compresses like a photograph."""
    rng = np.random.default_rng(index)
    small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    return small.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)


def build(folder: Path, count: int) -> None:
    """``count`` JPEGs under ``folder/images_largescale/synthetic/`` and lists in OpenOOD's format (random labels)."""
    images = folder / "images_largescale" / "synthetic"
    images.mkdir(parents=True, exist_ok=True)

    def write(index: int) -> None:
        path = images / f"{index:06d}.JPEG"
        if not path.exists():
            _picture(index).save(path, quality=90)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(write, range(count)))
    labels = np.random.default_rng(0).integers(0, 1000, count)
    lists = folder / "benchmark_imglist" / "synthetic"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "test.txt").write_text("".join(f"synthetic/{i:06d}.JPEG {labels[i]}\n" for i in range(count)))


def catalog(folder: Path, compare: int) -> Path:
    """ID sets ``synthetic-large`` (every image) and ``synthetic-compare`` (the first ``compare``), and a small OOD set."""
    lines = (folder / "benchmark_imglist" / "synthetic" / "test.txt").read_text().splitlines(keepends=True)
    (folder / "benchmark_imglist" / "synthetic" / "compare.txt").write_text("".join(lines[:compare]))
    (folder / "benchmark_imglist" / "synthetic" / "ood.txt").write_text("".join(f"{line.split()[0]} -1\n" for line in lines[-64:]))
    path = folder / "catalog.toml"
    entries = []
    for name, listed, role in (("synthetic-large", "test", "id"), ("synthetic-compare", "compare", "id"), ("synthetic-ood", "ood", "ood")):
        head = 'role = "id"\nnum_classes = 1000\nlabel_space = "imagenet-1k"\n' if role == "id" else 'role = "ood"\n'
        entries.append(f'[datasets.{name}]\n{head}[datasets.{name}.splits.test]\n'
                       f'list = "benchmark_imglist/synthetic/{listed}.txt"\nimages = "images_largescale"\n')
    path.write_text("\n".join(entries))
    return path


def _oodbench(folder: Path, catalog_path: Path, dataset: str, memory_limit: int | None = None) -> Measured:
    """Materialise and extract ``dataset`` through EfficientNet-Lite0 with oodbench, in a child process."""
    code = ("import time; from oodbench.runs import outputs\nstarted = time.perf_counter()\n"
            f"outputs(lambda task: task.kind == 'extract' and '{dataset}/' in task.label, methods=['msp'], id='{dataset}', "
            f"ood=['synthetic-ood'], preset='quick', backbone='efficientnet-lite0', limit=None, batch_size=BATCH, "
            f"catalogs=[r'{catalog_path}'], cache_dir=r'{folder / ('cache-' + dataset)}', quiet=True)\n"
            "print('seconds', time.perf_counter() - started)\n").replace("BATCH", str(BATCH))
    return measured([sys.executable, "-c", code], {**os.environ, "OODBENCH_PROGRESS": "0"}, memory_limit=memory_limit)


def bare_loop(folder: Path, count: int) -> float:
    """Seconds of a plain loop: PIL decode, the weights' transform, ``model(x)`` in batches of 64, same precision."""
    import torch
    import torchvision.transforms as T

    from oodbench.engine.device import select_compute
    from oodbench.models.checkpoints import load_published
    from oodbench.registry import build_registry

    backbone = build_registry().backbone("efficientnet-lite0")
    compute = select_compute("auto", "auto")
    model = compute.prepare(load_published(backbone, backbone.checkpoints[0].weights, 1000, None)).eval()
    transform = T.Compose([T.Resize(backbone.resize_size, T.InterpolationMode(backbone.interpolation)), T.CenterCrop(backbone.input_size),
                           T.ToTensor()])
    files = sorted((folder / "images_largescale" / "synthetic").glob("*.JPEG"))[:count]
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(files), BATCH):
            batch = torch.stack([transform(Image.open(f).convert("RGB")) for f in files[start : start + BATCH]])
            with compute.autocast():
                model(batch.to(compute.device))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--compare", type=int, default=2000)
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="run the large set in a memory cgroup capped at this many GiB (root on Linux), e.g. 8")
    args = parser.parse_args()
    started = time.perf_counter()
    build(args.out, args.images)
    path = catalog(args.out, args.compare)
    print(f"{args.images} JPEGs of {WIDTH}x{HEIGHT} in {args.out} ({time.perf_counter() - started:.0f} s to build; "
          f"{sum(f.stat().st_size for f in (args.out / 'images_largescale' / 'synthetic').iterdir()) / 2**20:.0f} MB)", flush=True)

    bare = bare_loop(args.out, args.compare)
    done = _oodbench(args.out, path, "synthetic-compare")
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    streamed = float(re.search(r"seconds (\S+)", done.stdout).group(1))
    print(f"{args.compare} images, cold cache, batches of {BATCH}: bare decode + model(x) loop {args.compare / bare:.1f} img/s, "
          f"oodbench materialise + extract {args.compare / streamed:.1f} img/s (planning included): "
          f"oodbench / bare = {bare / streamed:.2f}", flush=True)

    started = time.perf_counter()
    limit = None if args.memory_limit_gib is None else int(args.memory_limit_gib * 2**30)
    done = _oodbench(args.out, path, "synthetic-large", limit)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    print(f"{args.images} images materialised and extracted in {time.perf_counter() - started:.0f} s; {describe(done)}")


if __name__ == "__main__":
    main()
