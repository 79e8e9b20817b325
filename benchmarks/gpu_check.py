"""GPU check: how close oodbench comes to what the device can do, and whether bf16 keeps the numbers.

Stages (``--stage``):

- ``train``: materialise cifar10-jpeg (offline catalog) and train WRN-40-2 with the engine's
  recipe for as many epochs as fit in ``--train-seconds`` at the measured bare training speed
  (the number is printed; ``--epochs`` sets it);
- ``eval``: the 10 post-hoc methods plus mim, oe and bal on the OOD sets of ``--ood`` (a subset per
  call is fine: arrays, checkpoint and fine-tunes stay in ``--cache-dir``; archives already
  materialised need not be there again), once in the device's precision and the post-hoc
  methods once more in float32;
- ``all``: both.

It prints, and merges into ``--json``: images per second of the engine's training and extraction
next to a bare training-step / ``model(x)`` loop over the same tensors already on the device (the
upper bound), the test accuracy, the AUROC table, every post-hoc cell's AUROC - AUROC in fp32, the share
of MIM's mixing, colour jitter and affine warp in a MIM step, and the wall time of every stage.

It runs from a source checkout without installing oodbench (on a GPU machine with its own torch,
bring pytorch-ood as a wheel). On one H100, with the data carried in parts of at most ~60 MB::

    python benchmarks/gpu_check.py --stage train --catalog DATA/catalog.toml --cache-dir CACHE --json OUT/gpu_check.json
    python benchmarks/gpu_check.py --stage eval --ood tin-crop-32,dtd10-32,mnist-test --aux tin-aux ...
    python benchmarks/gpu_check.py --stage eval --ood tin-resize-32 ...

With the device tool (one H100, 15 minutes): in the repository, ``echo /.gpudata/ >> .git/info/exclude``,
copy ``catalog.toml`` and the zips of one call into ``.gpudata/`` (train: the two cifar10-jpeg zips,
61 MB; eval: OOD zips and tin-aux.zip up to ~60 MB), put the pytorch-ood wheel there too
(``python3 -m pip download --no-deps -d .gpudata pytorch-ood==0.4.0``, pure Python), carry
``.gpudata`` and start the command with
``pip install -q --no-index --no-deps --target /tmp/site .gpudata/*.whl && export PYTHONPATH=/tmp/site;``.
Keep ``--cache-dir`` outside the checkout and the calls back to back, so the warm machine keeps
the arrays and the checkpoint between them. Once every OOD set has been through an eval call,
``python benchmarks/hygiene.py --catalog .gpudata/catalog.toml --cache-dir CACHE`` measures the
data-hygiene check against the device's extraction on the same arrays.

What one such session took (2026-11-26, H100, torch 2.11): ~30 s to start; call 1 (235 s) a smoke
run of every stage (``--epochs 1 --train-limit 2000 --limit 300 --ood dtd10-32``, each cell
failing the call, chained with ``&&``) then ``--stage train --train-seconds 90``; call 2 (258 s)
eval of three OOD sets with ``--aux tin-aux``; call 3 (56 s) tin-resize-32 and the hygiene
benchmark. Carry only each call's files (``.gpudata/<file>``): archives of earlier calls stay on
the warm machine. With ``--train-seconds 90`` the three calls took 10 of the 15 minutes.

Copy the checkpoint the JSON names to ``$OUT`` as well: the same network's post-hoc AUROCs in bf16
and float32 on the CPU then tell the device's own precision effects from bf16's::

    python benchmarks/gpu_check.py --stage eval --checkpoint model.pt --post-hoc-only --device cpu \\
        --catalog ../shared/data/catalog.toml --cache-dir /tmp/cpu-check

The smallest settings, to prove it works on a CPU::

    python benchmarks/gpu_check.py --catalog ../shared/data/catalog.toml --epochs 1 --train-limit 2000 --limit 300 \\
        --ood tin-crop-32 --aux tin-aux --cache-dir /tmp/gpu-check --json /tmp/gpu-check/gpu_check.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import source_checkout  # noqa: F401  (before oodbench: this checkout, installed or not)
import torch
from timing import rate, synchronize

import oodbench
from oodbench.data.arrays import materialize
from oodbench.data.batches import resident, to_pixels
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.batching import inference_batch_size
from oodbench.engine.cache import ArtifactCache
from oodbench.engine.device import CompiledModule, select_compute
from oodbench.engine.estimate import Throughput, device_label
from oodbench.engine.stages.extract import forward_pass
from oodbench.hashing import DigestMemo
from oodbench.metrics import accuracy
from oodbench.models.checkpoints import STAGE, build_classifier, load_file, train_or_load, trained_key
from oodbench.models.training import cross_entropy_step, steps_per_epoch, uses_compile
from oodbench.registry import build_registry

POST_HOC = ["msp", "odin", "energy", "mahalanobis", "entropy", "maxlogit", "klmatching", "dice", "rmd", "vim"]
TRAINING = ["mim", "oe", "bal"]


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.registry = build_registry(catalogs=[args.catalog])
        self.backbone = self.registry.backbone(args.backbone)
        self.spec = self.registry.dataset(args.id)
        self.compute = select_compute(args.device, args.precision)
        self.cache = ArtifactCache(args.cache_dir)
        self.sources = SourceContext(args.cache_dir / "data", False, DigestMemo(args.cache_dir / "digests.json"))
        self.fmt = ImageFormat.of(self.backbone)
        self.report = json.loads(args.json.read_text()) if args.json.is_file() else {}
        self.report.update(device=self.compute.describe(), gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                           torch=torch.__version__)
        self.report.setdefault("stage_seconds", {})
        #: cells that failed in this call (the JSON's 'failures' keeps those of earlier calls too)
        self.failed: list[str] = []

    def timed(self, name: str, work: Callable):
        started = time.perf_counter()
        value = work()
        self.report["stage_seconds"][name] = round(time.perf_counter() - started, 2)
        print(f"[{self.report['stage_seconds'][name]:8.1f} s] {name}", flush=True)
        return value

    def split(self, name: str, limit: int | None):
        return materialize(self.spec, name, self.fmt, self.sources, self.cache, limit)

    def bare_training_rate(self, train, compiled: bool) -> float:
        """Training steps on one batch already on the device: no loading, no augmentation."""
        recipe = self.backbone.recipe
        model = self.compute.prepare(build_classifier(self.backbone, self.spec.num_classes)).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
        forward = CompiledModule(model, compiled)
        pixels = to_pixels(resident(np.asarray(train.images[: recipe.batch_size]), self.compute.device), self.compute.device,
                           self.compute.channels_last)
        target = torch.as_tensor(train.labels[: recipe.batch_size]).to(self.compute.device)
        scaler = self.compute.grad_scaler()

        def step() -> None:
            cross_entropy_step(forward, optimizer, pixels, target, self.compute, scaler)

        images_per_second = rate(step, len(pixels), self.compute.device, repeats=30)
        if self.args.profile_steps:
            self.profile(step, f"{'compiled' if compiled else 'eager'} bare training step")
        return images_per_second

    def profile(self, step: Callable[[], None], name: str) -> None:
        """Where ``--profile-steps`` steps spend their time: the operators with the most device (or CPU)
        time, and how busy the device was over the steps' wall time; also written next to the JSON."""
        from torch.profiler import ProfilerActivity, profile

        on_gpu = self.compute.device.type == "cuda"
        with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])) as profiler:
            started = time.perf_counter()
            for _ in range(self.args.profile_steps):
                step()
            synchronize(self.compute.device)
            wall = time.perf_counter() - started
        events = profiler.key_averages()
        table = events.table(sort_by="self_device_time_total" if on_gpu else "self_cpu_time_total", row_limit=20)
        busy = sum(event.self_device_time_total for event in events) / 1e6 if on_gpu else None
        summary = (f"{name}: {self.args.profile_steps} steps in {wall:.3f} s under the profiler"
                   + (f", device busy {busy:.3f} s ({100 * busy / wall:.0f}%)" if busy is not None else ""))
        path = self.args.json.parent / f"profile-{name.replace(' ', '-')}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary + "\n" + table)
        print(summary + "\n" + table, flush=True)

    def train(self) -> None:
        args = self.args
        train, test = self.timed("materialise train + test", lambda: (self.split("train", args.train_limit),
                                                                      self.split("test", args.limit)))
        def epochs_at(rate: float) -> int:
            return args.epochs or max(1, int(args.train_seconds * rate / len(train)))

        bare = self.timed("bare training-step loop (eager)", lambda: self.bare_training_rate(train, False))
        compiled = uses_compile(self.compute, len(train), dataclasses.replace(self.backbone.recipe, epochs=epochs_at(bare)))
        if compiled:  # the upper bound of a compiled training is a compiled loop, and sets the epochs
            bare = self.timed("bare training-step loop (compiled)", lambda: self.bare_training_rate(train, True))
        epochs = epochs_at(bare)
        recipe = dataclasses.replace(self.backbone.recipe, epochs=epochs)
        print(f"training {self.backbone.name} for {epochs} epoch(s) on {len(train)} images "
              f"(bare training: {bare:.0f} img/s{', compiled' if compiled else ''})", flush=True)
        key = trained_key(self.backbone, self.spec.num_classes, train.key, recipe, 0, self.compute)
        model, info = self.timed("train", lambda: train_or_load(self.backbone, self.spec.name, self.spec.num_classes, train,
                                                                recipe, 0, self.compute, self.cache, key))
        logits, _ = forward_pass(model.eval(), test, self.compute, 512)
        trained = steps_per_epoch(len(train), recipe) * min(recipe.batch_size, len(train)) * epochs / info["train_seconds"]
        self.report.update(epochs=epochs, train_images=len(train), test_accuracy=round(accuracy(logits, test.labels), 4),
                           checkpoint=str(self.cache.directory(STAGE, key) / "model.pt"),
                           training={"engine_img_s": round(trained), "bare_img_s": round(bare), "ratio": round(trained / bare, 3),
                                     "train_seconds": round(info["train_seconds"], 1), "compiled": compiled})
        print(f"training: engine {trained:.0f} img/s vs bare {bare:.0f} img/s ({trained / bare:.2f}); "
              f"test accuracy {self.report['test_accuracy']:.4f} on {len(test)} images", flush=True)

    def extraction(self, model, test, batch: int) -> None:
        pixels = to_pixels(resident(np.asarray(test.images), self.compute.device), self.compute.device, self.compute.channels_last)

        @torch.no_grad()
        def bare() -> None:
            with self.compute.autocast():
                for start in range(0, len(pixels), batch):
                    model(pixels[start : start + batch])

        bare_rate = rate(bare, len(pixels), self.compute.device, repeats=3, warmup=1)
        engine_rate = rate(lambda: forward_pass(model, test, self.compute, batch), len(test), self.compute.device, repeats=3, warmup=1)
        self.report["extraction"] = {"engine_img_s": round(engine_rate), "bare_img_s": round(bare_rate),
                                     "ratio": round(engine_rate / bare_rate, 3), "batch": batch}
        print(f"extraction: engine {engine_rate:.0f} img/s vs bare model(x) {bare_rate:.0f} img/s "
              f"({engine_rate / bare_rate:.2f}), batch {batch}", flush=True)

    def mim_augmentation_share(self, model, train) -> None:
        """Seconds of MIM's mixing + jitter/affine against a whole MIM step, on the device."""
        from oodbench.methods import mim

        params = mim.MimParams()
        x = to_pixels(resident(np.asarray(train.images[: params.batch_size]), self.compute.device), self.compute.device,
                      self.compute.channels_last)
        y = torch.as_tensor(train.labels[: params.batch_size]).to(self.compute.device)
        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.SGD(model.parameters(), lr=params.lr, momentum=params.momentum)
        scaler = self.compute.grad_scaler()

        def augment() -> torch.Tensor:
            return mim.augment_mixed(mim.multiple_input_mixup(x, params.k, generator), params.p_aug, generator)

        def step() -> None:
            with self.compute.autocast():
                logits = model(torch.cat([x, augment()])).float()
            loss = torch.nn.functional.cross_entropy(logits[: len(x)], y) + mim.uniform_cross_entropy(logits[len(x):])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        augment_rate = rate(augment, len(x), self.compute.device, repeats=5, warmup=1)
        step_rate = rate(step, len(x), self.compute.device, repeats=5, warmup=1)
        share = step_rate / augment_rate
        self.report["mim_augmentation_share"] = round(share, 3)
        print(f"mim: mixing + jitter/affine take {100 * share:.0f}% of a MIM step", flush=True)

    def run_methods(self, methods: list[str], precision: str):
        args = self.args
        return oodbench.run(methods=methods, id=args.id, ood=args.ood, preset="quick", backbone=self.backbone.name,
                            checkpoint=self.report["checkpoint"], train=False, limit=args.limit, train_limit=args.train_limit,
                            aux=args.aux, precision=precision, device=args.device, catalogs=[args.catalog],
                            cache_dir=args.cache_dir, data_root=args.cache_dir / "data", results=args.cache_dir / "results",
                            download=False, quiet=True)

    def evaluate(self) -> None:
        args = self.args
        if args.checkpoint:
            self.report["checkpoint"] = str(args.checkpoint)
        if "checkpoint" not in self.report:
            raise SystemExit(f"no trained checkpoint recorded in {args.json}: run --stage train first, or pass --checkpoint")
        train, test = self.split("train", args.train_limit), self.split("test", args.limit)
        model = self.compute.prepare(load_file(self.backbone, Path(self.report["checkpoint"]), self.spec.num_classes)).eval()
        batch = inference_batch_size(build_classifier(self.backbone, self.spec.num_classes), self.backbone.name,
                                     self.backbone.input_size, self.backbone.channels, self.compute,
                                     Throughput(args.cache_dir / "throughput.json", device_label(self.compute)))
        self.timed("extraction vs bare model(x)", lambda: self.extraction(model, test, batch))
        methods = POST_HOC
        if not args.post_hoc_only:
            self.timed("mim augmentation share", lambda: self.mim_augmentation_share(model, train))
            methods = POST_HOC + [m for m in TRAINING if m != "oe" or args.aux]
        result = self.timed(f"run: {len(methods)} methods x {len(args.ood)} OOD sets ({self.compute.precision})",
                            lambda: self.run_methods(methods, "auto"))
        fp32 = self.timed("run: post-hoc methods in fp32", lambda: self.run_methods(POST_HOC, "fp32"))
        for run, precision in ((result, self.compute.precision), (fp32, "fp32")):
            self.note_failures(run, precision)
        ours, exact = (r.records.set_index(["method", "ood_dataset"])["auroc"] for r in (result, fp32))
        difference = (ours.loc[exact.index] - exact).abs()
        worst = difference.idxmax()
        print("\n" + result.table())
        signed = (ours.loc[exact.index] - exact).unstack("ood_dataset")
        print(f"\nAUROC {self.compute.precision} - AUROC fp32 per post-hoc method and OOD set:\n{signed.round(4).to_string()}")
        print(f"largest |AUROC {self.compute.precision} - AUROC fp32| over the post-hoc methods: {difference.max():.4f} "
              f"({worst[0]} on {worst[1]})")
        print("stage rates of the run (img/s): " + ", ".join(f"{k} {v:.0f}" for k, v in result.rates.items()))
        for key, table in (("auroc", ours), ("auroc_fp32", exact)):
            stored = self.report.setdefault(key, {})
            for (method, ood), value in table.items():
                stored.setdefault(method, {})[ood] = round(float(value), 4)
        self.report.setdefault("max_auroc_difference_to_fp32", {}).update(
            {ood: round(float(difference.xs(ood, level=1).max()), 4) for ood in args.ood})
        self.report.setdefault("run_rates_img_s", {}).update({k: round(v) for k, v in result.rates.items()})

    def note_failures(self, result, precision: str) -> None:
        """Print every failed cell of ``result`` with its error and record it, so that the call ends in failure."""
        failed = result.records[~result.records["status"].isin(["ok", "not attacked"])]
        for row in failed.itertuples():
            line = f"{row.method} on {row.ood_dataset} ({precision}): {row.status}: {row.error}"
            print(f"FAILED {line}", flush=True)
            self.failed.append(line)
            self.report.setdefault("failures", []).append(line)

    def save(self) -> None:
        self.args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.args.json.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.report, indent=1, sort_keys=True))
        os.replace(tmp, self.args.json)
        print(f"\nwrote {self.args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=["all", "train", "eval"], default="all")
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=Path("gpu-check"))
    parser.add_argument("--json", type=Path, help="results, merged across calls (default: CACHE/gpu_check.json)")
    parser.add_argument("--id", default="cifar10-jpeg")
    parser.add_argument("--backbone", default="wrn-40-2")
    parser.add_argument("--ood", type=lambda v: [s for s in v.split(",") if s],
                        default=["tin-crop-32", "tin-resize-32", "dtd10-32", "mnist-test"])
    parser.add_argument("--aux", help="auxiliary set for oe (e.g. tin-aux); without it oe is left out")
    parser.add_argument("--epochs", type=int, help="default: as many as fit in --train-seconds at the bare training speed")
    parser.add_argument("--train-seconds", type=float, default=180.0)
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="profile this many bare training steps (top operators, device busy share; default: none)")
    parser.add_argument("--train-limit", type=int, help="images of the ID train split (default: all)")
    parser.add_argument("--limit", type=int, help="images per test split (default: all)")
    parser.add_argument("--checkpoint", type=Path,
                        help="eval: this trained network (e.g. one a GPU call trained, to compare precisions on the CPU) "
                             "instead of the one --stage train recorded")
    parser.add_argument("--post-hoc-only", action="store_true", help="eval: the 10 post-hoc methods only (no fine-tunes)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    args.json = args.json or args.cache_dir / "gpu_check.json"
    started = time.perf_counter()
    check = Check(args)
    print(f"gpu check on {check.compute.describe()} (torch {torch.__version__})", flush=True)
    try:
        if args.stage in ("all", "train"):
            check.train()
        if args.stage in ("all", "eval"):
            check.evaluate()
    finally:  # what was measured before a failure is kept
        check.report["stage_seconds"][f"whole {args.stage} call"] = round(time.perf_counter() - started, 1)
        check.save()
    if check.failed:
        raise SystemExit(f"{len(check.failed)} cell(s) failed: see FAILED above and 'failures' in {args.json}")


if __name__ == "__main__":
    main()
