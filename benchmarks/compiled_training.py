"""Training-step throughput of a backbone: eager vs ``torch.compile``, in the engine's precision.

Measures images per second of full SGD steps (forward, backward, update) on random data in one
process, after warm-up (compilation included in the warm-up, reported apart), and prints the ratio.

    python benchmarks/compiled_training.py [--backbone wrn-16-2] [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch

from oodbench.engine.device import CompiledModule, select_compute
from oodbench.models.checkpoints import build_classifier
from oodbench.models.training import cross_entropy_step
from oodbench.registry import build_registry


def throughput(module, model, optimizer, pixels, labels, compute, steps: int) -> tuple[float, float]:
    """(seconds of the first step, images per second over ``steps`` further steps)."""
    scaler = compute.grad_scaler()

    def step() -> None:
        cross_entropy_step(module, optimizer, pixels, labels, compute, scaler)

    started = time.perf_counter()
    step()
    first = time.perf_counter() - started
    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return first, steps * len(pixels) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="wrn-16-2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    backbone = build_registry().backbone(args.backbone)
    compute = select_compute()
    print(f"{args.backbone}, batch {args.batch_size}, {compute.describe()}")
    results = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = compute.prepare(build_classifier(backbone, 10)).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        size = backbone.input_size
        pixels = torch.rand(args.batch_size, backbone.channels, size, size).to(compute.device)
        pixels = pixels.contiguous(memory_format=torch.channels_last) if compute.channels_last else pixels
        labels = torch.randint(0, 10, (args.batch_size,)).to(compute.device)
        module = CompiledModule(model, enabled=compiled)
        first, rate = throughput(module, model, optimizer, pixels, labels, compute, args.steps)
        results[compiled] = rate
        print(f"{'compiled' if compiled else 'eager   '}: {rate:7.1f} img/s (first step {first:.1f} s)")
    print(f"compiled / eager: {results[True] / results[False]:.2f}x")


if __name__ == "__main__":
    main()
