"""``oodbench train``: train a backbone with the CE recipe, report its test accuracy, save it."""

from __future__ import annotations

import argparse
import dataclasses
import shutil

from oodbench.data.arrays import materialize
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.cache import ArtifactCache
from oodbench.engine.device import select_compute
from oodbench.engine.extract import forward_pass
from oodbench.errors import ConfigError
from oodbench.hashing import DigestMemo
from oodbench.metrics import accuracy
from oodbench.models.checkpoints import STAGE, train_or_load
from oodbench.registry import Registry


def train_command(registry: Registry, args: argparse.Namespace, paths: dict) -> int:
    spec = registry.dataset(args.id_dataset)
    if spec.role != "id":
        raise ConfigError(f"--id {spec.name} has role '{spec.role}'; training needs a labelled ID dataset")
    backbone = registry.backbone(args.backbone)
    compute = select_compute(args.device, args.precision, args.compile)
    cache = ArtifactCache(paths["cache_dir"])
    context = SourceContext(paths["data_root"], paths["download"], DigestMemo(paths["cache_dir"] / "digests.json"))
    fmt = ImageFormat(backbone.input_size, backbone.channels)
    train = materialize(spec, "train", fmt, context, cache).limited(args.train_limit)
    recipe = backbone.recipe if args.epochs is None else dataclasses.replace(backbone.recipe, epochs=args.epochs)
    checkpoint = train_or_load(backbone, spec.name, spec.num_classes, train, recipe, args.seed, compute, cache)
    path = cache.directory(STAGE, checkpoint.hash) / "model.pt"
    print(f"checkpoint {checkpoint.origin}: {path}")
    print(f"training: {recipe.epochs} epochs on {len(train)} images, "
          f"{checkpoint.info.get('wall_seconds', 0.0):.0f} s ({compute.describe()})")
    if "test" in spec.splits:
        test = materialize(spec, "test", fmt, context, cache)
        model = compute.prepare(checkpoint.model)
        logits, _ = forward_pass(model, test, compute, batch_size=512)
        print(f"accuracy on {test.label}: {accuracy(logits, test.labels):.4f} ({len(test)} images)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, args.out)
        print(f"saved state dict to {args.out}")
    return 0
