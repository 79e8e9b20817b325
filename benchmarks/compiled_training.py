"""Training-step and inference throughput of a backbone: eager vs ``torch.compile``, contiguous vs channels-last.

Measures images per second of full SGD steps (forward, backward, update) and of inference batches on random data
in one process, after warm-up (compilation included in the warm-up, reported apart), for each memory layout, and
prints the ratios to the contiguous eager step. ``--precision fp32`` measures the float32 path a CPU without native
bf16 takes (the engine's choice there: ``fast_paths`` in ``engine/device.py``).

    python benchmarks/compiled_training.py [--backbone wrn-16-2] [--steps 30] [--precision fp32]
"""

from __future__ import annotations

import argparse
import dataclasses
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


def inference_rate(model, pixels, compute, batches: int) -> float:
    """Images per second of inference batches, after one warm-up batch."""
    model.eval()
    with torch.no_grad(), compute.autocast():
        model(pixels)
        started = time.perf_counter()
        for _ in range(batches):
            model(pixels)
    return batches * len(pixels) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="wrn-16-2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    args = parser.parse_args()
    backbone = build_registry().backbone(args.backbone)
    engine = select_compute(precision=args.precision)
    print(f"{args.backbone}, batch {args.batch_size}, {torch.get_num_threads()} threads; the engine's choice: {engine.describe()}")
    results = {}
    for channels_last in (False, True):
        compute = dataclasses.replace(engine, channels_last=channels_last)
        layout = "channels-last" if channels_last else "contiguous   "
        size = backbone.input_size
        pixels = torch.rand(args.batch_size, backbone.channels, size, size).to(compute.device)
        pixels = pixels.contiguous(memory_format=torch.channels_last) if channels_last else pixels
        labels = torch.randint(0, 10, (args.batch_size,)).to(compute.device)
        torch.manual_seed(0)
        rate = inference_rate(compute.prepare(build_classifier(backbone, 10)), pixels, compute, max(4, args.steps // 3))
        print(f"{layout} inference        : {rate:7.1f} img/s")
        for compiled in (False, True):
            torch.manual_seed(0)
            model = compute.prepare(build_classifier(backbone, 10)).train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            module = CompiledModule(model, enabled=compiled)
            first, rate = throughput(module, model, optimizer, pixels, labels, compute, args.steps)
            results[channels_last, compiled] = rate
            print(f"{layout} training {'compiled' if compiled else 'eager   '}: {rate:7.1f} img/s (first step {first:.1f} s)")
    base = results[False, False]
    print("training, against contiguous eager: " + ", ".join(
        f"{'channels-last' if cl else 'contiguous'} {'compiled' if c else 'eager'} {rate / base:.2f}x" for (cl, c), rate in results.items()))


if __name__ == "__main__":
    main()
