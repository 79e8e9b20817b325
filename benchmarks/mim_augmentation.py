"""MIM's colour jitter + affine warp: torchvision image by image against the batched version, on one device.

Both apply the same transform with the same per-image parameters (``tests/test_training_methods.py``
checks that they agree); this measures images per second of each on a batch of mixed images the
size of a MIM batch, and prints the ratio.

    python benchmarks/mim_augmentation.py [--device auto] [--batch 128] [--repeats 5]
"""

from __future__ import annotations

import argparse

import source_checkout  # noqa: F401  (before oodbench: this checkout, installed or not)
import torch
from timing import rate

from oodbench.engine.device import select_compute
from oodbench.methods import mim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = select_compute(args.device).device
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    pipeline = mim.MIXED_AUGMENTATION.reference()
    one_by_one = rate(lambda: torch.stack([pipeline(image) for image in images]), len(images), device, args.repeats, warmup=1)
    batched = rate(lambda: mim.MIXED_AUGMENTATION(images), len(images), device, args.repeats, warmup=1)
    print(f"{device}, {args.batch} images of {args.size}x{args.size}: image by image {one_by_one:.0f} img/s, "
          f"batched {batched:.0f} img/s ({batched / one_by_one:.1f}x)")


if __name__ == "__main__":
    main()
