"""What ``--sealed`` costs: the wall time of a run of the post-hoc methods sealed and not, alternated.

With ``--fresh post-hoc`` (default) each run starts from the same cache with the decoded splits and
their extractions in it and no fit, score or metrics (those are what sealing changes): the default
run fits and scores in this process, the sealed one in sandboxed workers
(``oodbench/engine/sealed.py``), and the sandbox's start (a fresh interpreter importing torch and
pytorch-ood, seconds) has little else to overlap with. With ``--fresh all`` each run starts from an
empty cache (the network is the ``--checkpoint`` file): decoding, data hygiene and extraction come
first, as in a first run, and the sandbox starts while they run. The runs alternate (default,
sealed, default, sealed, ...) so that a machine that slows down or warms up affects both alike; the
script prints every wall time, the ratio of each pair, and whether the two agree on every AUROC.

With ``--process same`` (default) every run is a call of ``oodbench.run`` in this process, whose
imports are warm after the first: the sandbox's own start (a fresh interpreter importing torch and
pytorch-ood, about 4 s of CPU) then has the least to overlap with. With ``--process fresh`` every run
is a new ``python -m oodbench run`` process, as a user types it: both modes pay the same start-up,
and the sandbox starts while the engine imports its own modules.

Usage (the quick setting on the offline catalog; ``--checkpoint`` a trained WRN-16-2, e.g. the
quick preset's from ``oodbench train``, or omit it to train one first):

    python benchmarks/sealed_cost.py --catalog ../shared/data/catalog.toml --checkpoint FILE [--pairs 1] [--fresh all] \
        [--process fresh]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import source_checkout  # noqa: F401  (before oodbench: this checkout, installed or not)

import oodbench

METHODS = ("msp", "odin", "mahalanobis", "energy", "entropy", "maxlogit", "klmatching", "dice", "rmd", "vim", "knn")
OOD = ("tin-crop-32", "tin-resize-32", "dtd10-32", "mnist-test")
#: the stages sealing changes: emptied before every timed run of ``--fresh post-hoc``
POST_HOC = ("fit", "score", "metrics")


def command_line(options: dict, cache: Path, results: Path, sealed: bool) -> list[str]:
    """The ``oodbench run`` command of ``options``, in a new interpreter that imports this checkout."""
    start = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import source_checkout; "
             "from oodbench.cli import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", start, "run", "--methods", ",".join(options["methods"]), "--id", options["id"],
            "--ood", ",".join(options["ood"]), "--preset", options["preset"], "--catalog", *options["catalogs"],
            *(["--checkpoint", options["checkpoint"]] if options["checkpoint"] else []), "--results", str(results),
            "--device", options["device"], "--cache-dir", str(cache), *(["--sealed"] if sealed else [])]


def timed(cache: Path, sealed: bool, options: dict, everything: bool = False, fresh_process: bool = False) -> tuple[float, dict]:
    if everything:
        shutil.rmtree(cache, ignore_errors=True)
    for stage in POST_HOC:
        shutil.rmtree(cache / stage, ignore_errors=True)
    results = Path(tempfile.mkdtemp(prefix="oodbench-sealed-results-"))
    started = time.perf_counter()
    if fresh_process:
        subprocess.run(command_line(options, cache, results, sealed), check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "OODBENCH_PROGRESS": "0"})
        seconds = time.perf_counter() - started
        records = oodbench.load_results(results)
    else:
        result = oodbench.run(cache_dir=cache, sealed=sealed, quiet=True, results=results, **options)
        seconds = time.perf_counter() - started
        records = result.records
    if not (records["status"] == "ok").all():
        raise SystemExit(f"cells failed with sealed={sealed}:\n{records.loc[records['status'] != 'ok', ['method', 'error']]}")
    return seconds, {(r.method, r.ood_dataset): r.auroc for r in records.itertuples()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--checkpoint", help="a trained wrn-16-2 for cifar10-jpeg (default: train one with the quick preset)")
    parser.add_argument("--pairs", type=int, default=1, help="(default, sealed) pairs to run")
    parser.add_argument("--cache-dir", type=Path, help="a cache to warm and reuse (default: a temporary one)")
    parser.add_argument("--fresh", choices=("post-hoc", "all"), default="post-hoc",
                        help="what each timed run computes: the fits and scores (default), or everything from an empty cache")
    parser.add_argument("--process", choices=("same", "fresh"), default="same",
                        help="run in this process (default) or each run in a new `python -m oodbench run` process")
    args = parser.parse_args()
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="oodbench-sealed-cost-"))
    options = dict(methods=list(METHODS), id="cifar10-jpeg", ood=list(OOD), preset="quick", catalogs=[args.catalog],
                   checkpoint=args.checkpoint, device="cpu")
    everything = args.fresh == "all"
    if not everything:
        print("warming the cache (decoded splits, extractions)")
        timed(cache, False, options)
    times = {False: [], True: []}
    aurocs = {}
    for pair in range(args.pairs):
        for sealed in (False, True):
            seconds, aurocs[sealed] = timed(cache, sealed, options, everything, args.process == "fresh")
            times[sealed].append(seconds)
            print(f"pair {pair + 1}: {'sealed ' if sealed else 'default'} {seconds:6.1f} s")
        print(f"pair {pair + 1}: sealed / default = {times[True][-1] / times[False][-1]:.2f}")
    moved = max(abs(aurocs[True][cell] - aurocs[False][cell]) for cell in aurocs[False])
    print(f"{len(METHODS)} post-hoc methods x {len(OOD)} OOD sets, fresh: {args.fresh}, process: {args.process}; "
          "sealed / default wall time: "
          f"{sum(times[True]) / sum(times[False]):.2f} over {args.pairs} pair(s); largest AUROC difference {moved:.2g}")


if __name__ == "__main__":
    main()
