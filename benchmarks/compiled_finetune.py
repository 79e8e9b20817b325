"""A fine-tune (Outlier Exposure's loop, which ALOE and ATOM share, and MIM's) eager vs compiled, on the engine's device.

Runs the methods' own ``train()`` twice on the same random ID and auxiliary images from the same weights, once with
the forward passes eager and once through ``torch.compile`` (the training set's size leaves a short last batch, which
runs eagerly rather than compiling again), and prints each one's seconds (compilation in the compiled run's first
epoch), the ratio of the last epochs (compiled, warm) and the loss per epoch of both.

    python benchmarks/compiled_finetune.py [--backbone wrn-16-2] [--images 6400] [--epochs 2] [--methods oe,mim]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from oodbench.api import TrainingContext
from oodbench.data.batches import to_pixels
from oodbench.engine.device import select_compute
from oodbench.engine.inputs import finetune_forward
from oodbench.models.checkpoints import build_classifier
from oodbench.models.training import optimizer_step
from oodbench.params import resolve_params
from oodbench.progress import progress
from oodbench.registry import build_registry


class Timed:
    """A progress bar of the engine's that adds the seconds of its pass (an epoch) to ``durations``."""

    def __init__(self, bar, durations: list[float]) -> None:
        self.bar, self.durations = bar, durations

    def __iter__(self):
        started = time.perf_counter()
        yield from self.bar
        self.durations.append(time.perf_counter() - started)

    def __getattr__(self, name: str):
        return getattr(self.bar, name)


def timed(durations: list[float]):
    return lambda iterable, **options: Timed(progress(iterable, **options), durations)


def context(model, images, labels, aux, compute, scratch: Path, compiled: bool, durations: list[float]) -> TrainingContext:
    scaler = compute.grad_scaler()
    return TrainingContext(
        model=model, id_images=images, id_labels=labels, aux_images=aux, num_classes=model.num_classes, seed=0,
        device=compute.device, precision=compute.autocast, scratch=scratch, desc="",
        to_pixels=lambda batch: to_pixels(batch, compute.device, compute.channels_last),
        progress_display=timed(durations), backward_step=lambda loss, optimizer: optimizer_step(loss, optimizer, scaler),
        forward_for=lambda module, steps: finetune_forward(module, compiled))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="wrn-16-2")
    parser.add_argument("--images", type=int, default=6400, help="ID training images (random); not a multiple of 128")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--methods", default="oe,mim")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    args = parser.parse_args()
    registry = build_registry()
    backbone = registry.backbone(args.backbone)
    compute = select_compute(precision=args.precision)
    rng = np.random.default_rng(0)
    shape = (backbone.input_size, backbone.input_size, backbone.channels)
    images = rng.integers(0, 256, (args.images + 37, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, len(images))
    aux = rng.integers(0, 256, (4 * len(images), *shape), dtype=np.uint8)
    torch.manual_seed(0)
    base = compute.prepare(build_classifier(backbone, 10))
    print(f"{args.backbone} on {compute.describe()}, {len(images)} ID images (last batch short), {args.epochs} epoch(s)")
    for name in args.methods.split(","):
        cls = registry.method(name)
        method = cls(resolve_params(cls, "cifar10", "paper", {"epochs": args.epochs}))
        epochs, losses = {}, {}
        for compiled in (False, True):
            torch._dynamo.reset()
            epochs[compiled] = []
            with tempfile.TemporaryDirectory() as scratch:
                facts = method.train(context(copy.deepcopy(base), images, labels, aux, compute, Path(scratch), compiled,
                                             epochs[compiled]))
            losses[compiled] = facts["loss_per_epoch"]
        gap = max(abs(a - b) for a, b in zip(losses[False], losses[True], strict=True))
        warm = sum(epochs[False][1:]) / sum(epochs[True][1:]) if len(epochs[True]) > 1 else float("nan")
        print(f"{name}: seconds per epoch eager {np.round(epochs[False], 1).tolist()}, compiled {np.round(epochs[True], 1).tolist()} "
              f"(compilation in the first): {warm:.2f}x after the first epoch, {sum(epochs[False]) / sum(epochs[True]):.2f}x "
              f"in all; loss per epoch eager {np.round(losses[False], 5).tolist()}, compiled {np.round(losses[True], 5).tolist()} "
              f"(largest difference {gap:.2e})")


if __name__ == "__main__":
    main()
