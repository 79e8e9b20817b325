"""The ``oodbench`` command: run, plan, report, compare, leaderboard, verify, submit, list, data, train.

A thin layer over the Python API (:mod:`oodbench.runs`): it parses arguments, calls
``oodbench.run`` / ``oodbench.plan``, and prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from oodbench.config import default_home
from oodbench.errors import ConfigError, OodbenchError

EPILOG = """examples:
  oodbench run                                   the demo: digits, a tiny CNN, 10 detectors (no network)
  oodbench run --id cifar10 --methods msp,odin,energy --preset paper
  oodbench plan --methods mim,oe,bal --id cifar100  what would run, what is cached, how long the rest takes
  OODBENCH_CATALOG=../shared/data/catalog.toml oodbench run --preset smoke --id cifar10-jpeg
  oodbench leaderboard results/ submissions/theirs --out leaderboard/   a static site from stores
  oodbench verify RUN_ID --cells 8               re-execute a sample of a run's cells in a fresh cache
  oodbench list methods
"""


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _limit(value: str) -> int | None:
    if value.lower() in {"all", "none", "0"}:
        return None
    try:
        limit = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or 'all', got {value!r}") from None
    if limit < 0:
        raise argparse.ArgumentTypeError("a limit must be positive")
    return limit


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers separated by commas, got {value!r}") from None


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("environment")
    group.add_argument("--catalog", action="append", default=[], metavar="FILE",
                       help="catalog file of offline datasets (repeatable; also OODBENCH_CATALOG)")
    group.add_argument("--plugins", action="append", default=[], metavar="DIR",
                       help="directory of plugin files (repeatable; also OODBENCH_PLUGINS)")
    group.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                       help="where downloaded datasets live (default: $OODBENCH_HOME/data)")
    group.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                       help="artifact cache (default: $OODBENCH_HOME/cache, OODBENCH_HOME=~/.cache/oodbench)")
    group.add_argument("--no-download", dest="download", action="store_false",
                       help="never download; fail with instructions when files are missing")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    group.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                       help="auto: bfloat16 autocast on GPUs that support it (float16 with loss scaling on older ones) "
                            "and on CPUs with native bf16, else float32")
    group.add_argument("--no-compile", dest="compile", action="store_false",
                       help="train classifiers eagerly instead of through torch.compile (used on GPUs and bf16 CPUs)")


def _run_arguments(run: argparse.ArgumentParser) -> None:
    """The arguments ``run`` and ``plan`` share."""
    run.add_argument("--preset", help="defaults (oodbench list presets); without it: demo (no --id), else quick on CPU / paper on GPU")
    run.add_argument("--id", dest="id_dataset", type=_csv,
                     help="in-distribution dataset; several, comma-separated, make a grid (one plan, a report section each)")
    run.add_argument("--ood", type=_csv, help="OOD datasets, comma-separated (default: each ID set's list)")
    run.add_argument("--methods", type=_csv, help="methods, comma-separated (default: all that do not fine-tune the classifier)")
    run.add_argument("--backbone", type=_csv, help="backbone architecture; several, comma-separated, make a grid (default: the preset's)")
    run.add_argument("--checkpoint", help="state-dict file (OpenOOD checkpoints and torchvision weights files in their own "
                     "naming too), pytorch-ood:KEY of pytorch-ood's model registry, or torchvision:NAME (ResNet50_Weights.IMAGENET1K_V1)")
    run.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds (default: 0)")
    run.add_argument("--limit", type=_limit, default=argparse.SUPPRESS, help="images per test split, or 'all'")
    run.add_argument("--train-limit", type=_limit, default=argparse.SUPPRESS, help="images of the ID train split, or 'all'")
    run.add_argument("--epochs", type=int, help="epochs when the backbone is trained")
    run.add_argument("--time-budget", metavar="DURATION",
                     help="how long the whole run may take (20m, 1h30m): the backbone trains for as many epochs as fit, "
                          "chosen from this device's measured rates; the cells are marked as reduced settings")
    run.add_argument("--train", dest="train", action="store_true", default=None, help="train the backbone when no checkpoint is known")
    run.add_argument("--no-train", dest="train", action="store_false", help="never train the backbone")
    run.add_argument("--batch-size", type=int, help="inference batch size")
    run.add_argument("--variant", action="append", default=[], metavar="LABEL=METHOD:NAME=VALUE,...",
                     help="also run METHOD under LABEL with other parameters, e.g. 'bal-Lt=bal:use_shuffle=false' (repeatable)")
    run.add_argument("--aux", help="auxiliary outlier dataset (role aux) for training-time methods (default: each method's own)")
    run.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                     help="override a method parameter, e.g. odin.eps=0.002 (repeatable)")
    run.add_argument("--protocol", default="clean", metavar="NAME",
                     help="whose settings the methods use: clean (default: each paper's, every fit on ID train), "
                          "mim-notebook (the MIM paper's notebooks, fits on the ID test split included) or openood-v1.5 "
                          "(OpenOOD's benchmarks, settings and tables); oodbench list protocols")
    run.add_argument("--tune", action="store_true",
                     help="choose the hyperparameters of methods that declare a search space (odin, mahalanobis, dice, knn) "
                          "on the ID set's validation data when it declares some (OpenOOD's benchmarks), else on a held-out "
                          "slice of ID train against --tune-ood")
    run.add_argument("--tune-ood", default="uniform", metavar="NAME",
                     help="validation OOD set for --tune where the ID set declares none; never a test OOD set of the run (default: uniform)")
    run.add_argument("--full-spectrum", action="store_true",
                     help="full-spectrum evaluation (OpenOOD v1.5): the ID set's covariate-shifted sets (ImageNet-V2, -C, -R, ...) "
                          "count as ID in every metric, and their accuracy is reported")
    run.add_argument("--sealed", action="store_true",
                     help="run the methods' fit() and score() in sandboxed worker processes that see only their inputs "
                          "(Linux with Landlock; for evaluating code you did not write)")
    run.add_argument("--attack", dest="attacks", action="append", default=[], metavar="SPEC",
                     help="also evaluate under an L-inf PGD attack: aloe, atom, or pgd:eps=E,steps=S,step=A,target=id|ood|both "
                          "(repeatable)")
    run.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results/)")
    run.add_argument("--executor", default="local",
                     help="where tasks run: local (default, in this process) or ray (a Ray instance; pip install 'oodbench[ray]')")
    run.add_argument("--ray-address", help="with --executor ray: the Ray cluster to join (default: start a local instance)")
    _common(run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oodbench", description="Comparative benchmark of OOD detectors on image classifiers.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command")

    run = commands.add_parser("run", help="run detectors and print the MIM-paper table (no arguments: the demo)")
    _run_arguments(run)
    run.add_argument("--report", action="store_true", help="render the HTML report of this run at the end")

    plan = commands.add_parser("plan", help="show the tasks a run would do, which are cached, and the estimated time of the rest")
    _run_arguments(plan)

    report = commands.add_parser("report", help="render the HTML report (tables, plots, statistics, exports)")
    which = report.add_mutually_exclusive_group()
    which.add_argument("--run", help="a run id")
    which.add_argument("--latest", action="store_true", help="the latest complete run (the default)")
    which.add_argument("--all", action="store_true", help="every run in the store (the latest result of each cell)")
    report.add_argument("--id", dest="id_dataset", help="only this ID dataset")
    report.add_argument("--out", type=Path, help="output directory (default: reports/<run id or 'all'>)")
    report.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results/)")
    report.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (default: 1000)")
    report.add_argument("--screenshot", action="store_true", help="also save a full-page PNG (needs Chromium and the 'browser' extra)")

    compare = commands.add_parser("compare", help="per-cell differences between two runs, regressions marked")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--threshold", type=float, default=0.005, help="a worse value by more than this is a regression")
    compare.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results/)")

    board = commands.add_parser("leaderboard", help="a static leaderboard site (sortable tables, reports, provenance) from stores")
    board.add_argument("stores", nargs="+", metavar="STORE",
                       help="results directories, oodbench.sqlite files or submission bundles (oodbench submit)")
    board.add_argument("--out", type=Path, default=Path("leaderboard"), help="output directory (default: leaderboard/)")
    board.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (default: 1000)")
    board.add_argument("--screenshot", action="store_true", help="also save a full-page PNG (needs Chromium and the 'browser' extra)")

    verify = commands.add_parser("verify", help="re-execute a sample of a run's cells in a fresh cache and check their metrics")
    verify.add_argument("run", nargs="?", help="a run id (default: the store's latest complete run)")
    verify.add_argument("--results", type=Path, default=Path("results"),
                        help="results directory, its oodbench.sqlite, or a submission bundle (default: results/)")
    verify.add_argument("--cells", type=_limit, default=8, help="cells to re-execute, drawn at random, or 'all' (default: 8)")
    verify.add_argument("--network-cache", type=Path, metavar="DIR",
                        help="the cache the run's network was trained into (default: the run's recorded --cache-dir)")
    _common(verify)  # catalogs and plugin directories besides those the run recorded

    submission = commands.add_parser("submit", help="evaluate someone else's method file sealed and write an entry bundle")
    submission.add_argument("method_file", type=Path, metavar="METHOD_FILE", help="the .py file that defines the method class")
    submission.add_argument("--checkpoint", help="the classifier's weights file (copied into the bundle); default: the preset's network")
    submission.add_argument("--protocol", default="clean", metavar="NAME", help="the protocol it is evaluated on (oodbench list protocols)")
    submission.add_argument("--id", dest="id_dataset", help="in-distribution dataset (default: the preset's)")
    submission.add_argument("--ood", type=_csv, help="OOD datasets, comma-separated (default: the ID set's list)")
    submission.add_argument("--preset", help="defaults of the run (oodbench list presets)")
    submission.add_argument("--backbone", help="backbone architecture (default: the preset's)")
    submission.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds (default: 0)")
    submission.add_argument("--out", type=Path, help="the bundle's directory (default: submissions/<file name>)")
    _common(submission)

    listing = commands.add_parser("list", help="list methods, datasets, backbones, presets or protocols")
    listing.add_argument("what", choices=["methods", "datasets", "backbones", "presets", "protocols"])
    _common(listing)

    data = commands.add_parser("data", help="verify or prepare datasets, or find near-duplicates between two")
    data.add_argument("action", choices=["verify", "prepare", "overlap"])
    data.add_argument("names", nargs="*", help="datasets (default: all); overlap: two, each NAME or NAME/SPLIT")
    data.add_argument("--backbone", help="prepare arrays at this backbone's input format (default: the default preset's)")
    _common(data)

    train = commands.add_parser("train", help="train a backbone with the cross-entropy recipe (cached)")
    train.add_argument("--id", dest="id_dataset", required=True, help="in-distribution dataset")
    train.add_argument("--backbone", help="default: the backbone of the preset 'oodbench run' picks here")
    train.add_argument("--epochs", type=int, help="default: the backbone recipe's")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--train-limit", type=_limit, default=None, help="images of the train split, or 'all'")
    train.add_argument("--out", type=Path, help="also save the state dict to this file")
    _common(train)
    return parser


def _parse_params(items: Sequence[str]) -> dict[str, dict[str, str]]:
    params: dict[str, dict[str, str]] = {}
    for item in items:
        name, _, value = item.partition("=")
        method, _, key = name.partition(".")
        if not value or not key or not method:
            raise ConfigError(f"--param {item!r} is not METHOD.NAME=VALUE", "e.g. --param odin.eps=0.002")
        params.setdefault(method, {})[key] = value
    return params


def _parse_variants(items: Sequence[str]) -> dict[str, tuple[str, dict[str, str]]]:
    variants: dict[str, tuple[str, dict[str, str]]] = {}
    for item in items:
        label, _, spec = item.partition("=")
        method, _, assignments = spec.partition(":")
        if not label or not method:
            raise ConfigError(f"--variant {item!r} is not LABEL=METHOD[:NAME=VALUE,...]", "e.g. --variant bal-Lt=bal:use_shuffle=false")
        overrides = {}
        for assignment in filter(None, assignments.split(",")):
            key, _, value = assignment.partition("=")
            if not key or not value:
                raise ConfigError(f"--variant {item!r}: {assignment!r} is not NAME=VALUE")
            overrides[key] = value
        variants[label] = (method, overrides)
    return variants


def _home_paths(args: argparse.Namespace) -> dict:
    home = default_home()
    return {"cache_dir": args.cache_dir or home / "cache", "data_root": args.data_root or home / "data",
            "download": args.download}


def _registry(args: argparse.Namespace):
    from oodbench.registry import build_registry

    registry = build_registry(args.plugins, args.catalog)
    for problem in registry.problems:
        print(f"warning: plugin not loaded: {problem}", file=sys.stderr)
    return registry


def _api_options(args: argparse.Namespace) -> dict:
    """The Python API's arguments for a ``run`` / ``plan`` command line."""
    variants = _parse_variants(args.variant)
    return {
        "methods": args.methods, "id": args.id_dataset, "ood": args.ood, "preset": args.preset, "seeds": args.seeds,
        "params": _parse_params(args.param), "variants": variants, "backbone": args.backbone, "checkpoint": args.checkpoint,
        "aux": args.aux, "attacks": args.attacks, "protocol": args.protocol, "tune": args.tune, "tune_ood": args.tune_ood, "epochs": args.epochs, "train": args.train, "batch_size": args.batch_size, "device": args.device,
        "precision": args.precision, "compile": args.compile, "catalogs": args.catalog, "plugins": args.plugins,
        "results": args.results, "cache_dir": args.cache_dir, "data_root": args.data_root, "sealed": args.sealed,
        "full_spectrum": args.full_spectrum, "time_budget": args.time_budget,
        **{name: getattr(args, name) for name in ("limit", "train_limit") if hasattr(args, name)},
    }


def cmd_run(args: argparse.Namespace) -> int:
    import oodbench

    result = oodbench.run(download=args.download, executor=args.executor, ray_address=args.ray_address, **_api_options(args))
    if result.rank:  # a helper process of a torchrun group: the first process reports
        return 0
    records = result.records
    print()
    print(result.table())
    ok, not_attacked = records["status"] == "ok", records["status"] == "not attacked"
    print()
    grid = f"{len(result.configs)} (ID set, backbone) x " if len(result.configs) > 1 else ""
    print(f"run {result.run_id}: {grid}{records['method'].nunique()} methods x {records['ood_dataset'].nunique()} OOD sets x "
          f"{len(result.config.seeds)} seed(s), {int(ok.sum())}/{len(ok) - int(not_attacked.sum())} cells ok"
          + (f" ({int(not_attacked.sum())} not attacked)" if not_attacked.any() else "")
          + f", wall time {result.wall_time_s:.1f} s")
    print(f"stages: {result.stages}")
    if result.rates:
        bare = {"checkpoint": "bare training step", "extract": "bare forward"}
        print("images per second: " + ", ".join(
            f"{kind} {rate:.0f}" + (f" ({bare[kind]} {result.bare_rates[kind]:.0f})" if kind in result.bare_rates else "")
            for kind, rate in result.rates.items())
              + " (checkpoint / finetune: training images; score: methods that read images; attack: gradient steps; "
                "bare: the network alone on random pixels here)")
    if result.computed:
        print("computed, per stage: " + ", ".join(f"{kind} {count} task(s) in {seconds:.0f} s"
                                                   for kind, (count, seconds) in result.computed.items())
              + " (an extract task is one pass of a split through a network, with every layer its methods read)")
    print(f"images through the classifier: {result.images_forwarded}")
    print(f"results: {result.config.results_dir / 'oodbench.sqlite'}")
    if args.report:
        render_report(result.config.results_dir, result.run_id, Path("reports") / result.run_id)
    return 0 if result.ok else 1


def cmd_plan(args: argparse.Namespace) -> int:
    import oodbench
    from oodbench.engine.executors import get_executor

    get_executor(args.executor, args.ray_address)  # an unknown executor or a missing extra is said now
    print(oodbench.plan(executor=args.executor, ray_address=args.ray_address, **_api_options(args)))
    return 0


def render_report(results_dir: Path, run: str | None, out: Path, all_runs: bool = False, id_dataset: str | None = None,
                  replicates: int = 1000, screenshot: bool = False) -> Path:
    from oodbench.report.html import Selection, build_report
    from oodbench.store import ResultStore

    path = build_report(ResultStore(results_dir / "oodbench.sqlite"), Selection(run=run, all=all_runs, id_dataset=id_dataset),
                        out, replicates)
    print(f"report: {path}")
    if screenshot:
        _screenshot(path, out / "report.png")
    return path


def cmd_report(args: argparse.Namespace) -> int:
    from oodbench.store import ResultStore

    run = None if args.all else (args.run or ResultStore(args.results / "oodbench.sqlite").require().latest_run_id())
    out = args.out or Path("reports") / (run or "all")
    render_report(args.results, run, out, all_runs=args.all, id_dataset=args.id_dataset, replicates=args.replicates,
                  screenshot=args.screenshot)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from oodbench.report.compare import compare_runs, format_comparison
    from oodbench.store import ResultStore

    merged, notes = compare_runs(ResultStore(args.results / "oodbench.sqlite").require(), args.run_a, args.run_b, args.threshold)
    print(format_comparison(merged, notes, args.run_a, args.run_b, args.threshold))
    return 1 if merged["regression"].any() else 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from oodbench.board.site import build_site

    path = build_site(args.stores, args.out, args.replicates)
    print(f"leaderboard: {path}")
    if args.screenshot:
        _screenshot(path, args.out / "leaderboard.png")
    return 0


def _screenshot(page: Path, png: Path) -> None:
    from oodbench.report.browser import visit

    visited = visit(page)
    png.write_bytes(visited.screenshot)
    print(f"screenshot: {png} ({len(visited.errors)} console errors, {len(visited.network_requests)} network requests)")
    for error in visited.errors:
        print(f"  console: {error}")


def cmd_verify(args: argparse.Namespace) -> int:
    from oodbench.board.sources import open_source
    from oodbench.board.verify import format_checks, verify_run

    source = open_source(args.results)
    run_id = args.run or (source.entry or {}).get("run_id") or source.store.require().latest_run_id()
    checks = verify_run(source, run_id, args.cells, args.catalog, args.plugins, args.network_cache)
    print()
    print(format_checks(checks, run_id))
    return 0 if all(check.verdict == "reproduced" for check in checks) else 1


def cmd_submit(args: argparse.Namespace) -> int:
    from oodbench.board.submit import submit

    out = args.out or Path("submissions") / args.method_file.stem
    entry = submit(args.method_file, out, catalogs=args.catalog, checkpoint=args.checkpoint, protocol=args.protocol,
                   id=args.id_dataset, ood=args.ood, preset=args.preset, backbone=args.backbone, seeds=args.seeds,
                   device=args.device, precision=args.precision, compile=args.compile, cache_dir=args.cache_dir,
                   data_root=args.data_root, download=args.download)
    print(f"submission: {entry} (leaderboard: oodbench leaderboard {out}; re-check: oodbench verify --results {out})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from oodbench.report.listing import list_table

    print(list_table(args.what, _registry(args)))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    import torch

    from oodbench.config import choose_preset
    from oodbench.data.manage import overlap, prepare, verify

    registry = _registry(args)
    names = args.names or sorted(registry.datasets)
    paths = _home_paths(args)
    if args.action == "verify":
        return verify(registry, names, paths)
    backbone = registry.backbone(args.backbone or choose_preset(registry, None, True, torch.cuda.is_available()).backbone)
    if args.action == "overlap":
        if len(args.names) != 2:
            raise ConfigError(f"data overlap compares two datasets, got {len(args.names)}", "e.g. oodbench data overlap tin-aux tin-crop-32")
        return overlap(registry, *args.names, backbone, paths)
    return prepare(registry, names, backbone, paths)


def cmd_train(args: argparse.Namespace) -> int:
    from oodbench.models.train_command import train_command

    registry = _registry(args)
    return train_command(registry, args, _home_paths(args))


def main(argv: Sequence[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    handlers = {"run": cmd_run, "plan": cmd_plan, "report": cmd_report, "compare": cmd_compare, "leaderboard": cmd_leaderboard, "verify": cmd_verify, "submit": cmd_submit, "list": cmd_list,
                "data": cmd_data, "train": cmd_train}
    try:
        return handlers[args.command](args)
    except OodbenchError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.fix:
            print(f"  fix: {error.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are cached; rerun the same command to resume", file=sys.stderr)
        return 130
