"""``oodbench train``: train a backbone with the CE recipe, report its test accuracy, save it.

Under ``torchrun --nproc-per-node N -m oodbench train ...`` the N processes train data-parallel
(``models/distributed.py``); rank 0 writes the cache, reports and saves.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil

from oodbench.config import choose_preset
from oodbench.data.arrays import materialize
from oodbench.data.source import ImageFormat
from oodbench.engine.context import EngineContext
from oodbench.engine.stages.extract import forward_pass
from oodbench.errors import ConfigError
from oodbench.metrics import accuracy
from oodbench.models.checkpoints import STAGE, train_or_load, trained_key
from oodbench.models.distributed import join_from_environment
from oodbench.registry import Registry


def train_command(registry: Registry, args: argparse.Namespace, paths: dict) -> int:
    import torch

    spec = registry.dataset(args.id_dataset)
    if spec.role != "id":
        raise ConfigError(f"--id {spec.name} has role '{spec.role}'; training needs a labelled ID dataset")
    backbone = registry.backbone(args.backbone or choose_preset(registry, None, True, torch.cuda.is_available()).backbone)
    world = join_from_environment()  # under torchrun: one process per GPU, data-parallel
    device = f"cuda:{torch.cuda.current_device()}" if world.size > 1 and torch.cuda.is_available() else args.device
    ctx = EngineContext.create(device, args.precision, args.compile, paths["cache_dir"], paths["data_root"], paths["download"])
    compute, cache, context = ctx.compute, ctx.cache, ctx.sources
    fmt = ImageFormat.of(backbone)
    train = materialize(spec, "train", fmt, context, cache, args.train_limit)
    recipe = backbone.recipe if args.epochs is None else dataclasses.replace(backbone.recipe, epochs=args.epochs)
    key = trained_key(backbone, spec.num_classes, train.key, recipe, args.seed, compute)
    model, info = train_or_load(backbone, spec.name, spec.num_classes, train, recipe, args.seed, compute, cache, key)
    if not world.writer:  # rank 0 reports and saves
        return 0
    path = cache.directory(STAGE, key) / "model.pt"
    print(f"checkpoint trained:{backbone.name}/{spec.name}/seed{args.seed}: {path}")
    print(f"training: {recipe.epochs} epochs on {len(train)} images, {info.get('wall_seconds', 0.0):.0f} s "
          f"({compute.describe()}, {info.get('world_size', 1)} process(es))")
    if "test" in spec.splits:
        test = materialize(spec, "test", fmt, context, cache)
        logits, _ = forward_pass(model.eval(), test, compute, batch_size=512)
        print(f"accuracy on {test.label}: {accuracy(logits, test.labels):.4f} ({len(test)} images)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, args.out)
        print(f"saved state dict to {args.out}")
    return 0
