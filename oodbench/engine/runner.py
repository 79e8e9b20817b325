"""Execute a run: plan from the methods' declared capabilities, then compute what the cache lacks.

Order of work (every stage cached under a content key, see ``engine/cache.py``):

1. materialise every split the run needs (ID test, OOD sets, and ID train when a method fits or
   the backbone is trained); data errors stop the run here, before anything is written;
2. per seed, load / download / train the checkpoint; extract the ID test split (ID accuracy);
3. per method: look up its cached scores for every split; for the missing ones, fit (on the ID
   train split, if the method fits) and score, sharing one extraction of logits and features per
   (checkpoint, split) between all methods that read them; methods that read images get the
   network and pixel batches instead;
4. metrics per (method, OOD set) into the results store, one transaction per method.

A method that raises marks its cells failed and the run goes on. Nothing here knows a method or
dataset by name.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import resource
import secrets
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytorch_ood
import torch

from oodbench.api import (
    BackboneSpec,
    Capabilities,
    DatasetSpec,
    ImageBatches,
    Method,
    Reads,
    Representations,
    TrainingContext,
)
from oodbench.config import RunConfig
from oodbench.data.arrays import SplitArrays, materialize
from oodbench.data.batches import pixel_batches
from oodbench.data.source import ImageFormat, SourceContext
from oodbench.engine.cache import ArtifactCache, save_array
from oodbench.engine.device import Compute, select_compute
from oodbench.engine.extract import Extraction, extract
from oodbench.errors import ConfigError
from oodbench.hashing import DigestMemo, code_version, stable_hash
from oodbench.metrics import METRIC_NAMES, accuracy, detection_metrics
from oodbench.models.checkpoints import (
    Checkpoint,
    load_reference,
    load_registry,
    train_or_load,
)
from oodbench.provenance import git_commit, hardware, package_versions
from oodbench.registry import Registry
from oodbench.store import ResultStore

FIT_STAGE = "fits"
SCORE_STAGE = "scores"
FINETUNE_STAGE = "finetune"


@dataclass
class ForwardCounter:
    """Counts images passed through the classifier in this run (training, extraction, scoring)."""

    images: int = 0

    def __call__(self, count: int) -> None:
        self.images += count


@dataclass
class Network:
    """The classifier methods are evaluated with: its checkpoint, the module on the device, ID accuracy."""

    checkpoint: Checkpoint
    model: torch.nn.Module
    id_accuracy: float
    seed: int


@dataclass(frozen=True)
class RunData:
    """The splits of a run: ID test, OOD sets, ID train (when needed) and auxiliary outliers (when needed)."""

    id_spec: DatasetSpec
    id_test: SplitArrays
    oods: list[SplitArrays]
    train: SplitArrays | None
    aux: SplitArrays | None


@dataclass
class PlannedMethod:
    name: str
    cls: type[Method]
    params: object
    capabilities: Capabilities


@dataclass(frozen=True)
class ScoredSplit:
    """Outlier scores of one split, the seconds it took to compute them, and their cache key."""

    scores: np.ndarray
    seconds: float
    key: str


@dataclass
class RunOutcome:
    run_id: str
    results: object
    images_forwarded: int
    wall_time_s: float
    stages: str
    notes: list[str] = field(default_factory=list)


def evaluation_split(spec: DatasetSpec) -> str:
    """The split a dataset is evaluated on: ``test`` when it has one, else its only split."""
    if "test" in spec.splits:
        return "test"
    if len(spec.splits) == 1:
        return next(iter(spec.splits))
    raise ConfigError(f"dataset '{spec.name}' has no 'test' split", f"its splits: {', '.join(spec.splits)}")


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA) or the process's peak resident memory (CPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Benchmark:
    """One ``oodbench run``: resolves names through the registry, computes, stores, returns results."""

    def __init__(self, config: RunConfig, registry: Registry, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.registry = registry
        self.say = say
        self.cache = ArtifactCache(config.cache_dir)
        self.store = ResultStore(config.results_dir / "oodbench.sqlite")
        self.compute: Compute = select_compute(config.device, config.precision, config.compile)
        self.context = SourceContext(config.data_root, config.download, DigestMemo(config.cache_dir / "digests.json"))
        self.forwarded = ForwardCounter()
        self.notes: list[str] = []
        self._extractions: dict[str, Extraction] = {}

    # -- planning -------------------------------------------------------------------------

    def _plan_methods(self, id_dataset: str) -> list[PlannedMethod]:
        """Each entry of --methods (a method or a --variant label) with its resolved parameters."""
        config = self.config
        bases = {config.variants.get(name, (name, {}))[0] for name in config.methods}
        unknown_params = set(config.params) - bases
        if unknown_params:
            raise ConfigError(
                f"--param names method(s) {sorted(unknown_params)} that are not in --methods",
                "add them to --methods or drop the parameter",
            )
        planned = []
        for name in config.methods:
            base, overrides = config.variants.get(name, (name, {}))
            cls = self.registry.method(base)
            params = cls.parameters_for(id_dataset, {**config.params.get(base, {}), **overrides})
            planned.append(PlannedMethod(name, cls, params, cls(params).capabilities()))
        return planned

    def _checkpoint_mode(self, backbone: BackboneSpec, id_spec: DatasetSpec, seed: int) -> str:
        if self.config.checkpoint:
            return "reference"
        if self.config.pretrained and backbone.known_checkpoint(id_spec.name, seed):
            return "registry"
        if self.config.train:
            return "train"
        known = sorted({f"{c.dataset} (seed {c.seed})" for c in backbone.checkpoints}) or ["none"]
        raise ConfigError(
            f"no checkpoint of backbone '{backbone.name}' for '{id_spec.name}' with seed {seed}; "
            f"published weights exist for: {', '.join(known)}",
            "pass --checkpoint FILE (or pytorch-ood:KEY), or --train to train one with the backbone's recipe",
        )

    def split(self, spec: DatasetSpec, split: str, fmt: ImageFormat, limit: int | None) -> SplitArrays:
        """The materialised arrays of a split, limited to a deterministic subset of ``limit`` images."""
        return materialize(spec, split, fmt, self.context, self.cache).limited(limit)

    # -- stages ---------------------------------------------------------------------------

    def _checkpoint(self, mode: str, backbone: BackboneSpec, id_spec: DatasetSpec, train: SplitArrays | None, seed: int) -> Checkpoint:
        if mode == "reference":
            return load_reference(backbone, self.config.checkpoint, id_spec.num_classes, self.context.digests)
        if mode == "registry":
            known = backbone.known_checkpoint(id_spec.name, seed)
            return load_registry(backbone, known.registry_key, id_spec.num_classes, known)
        recipe = backbone.recipe
        if self.config.epochs is not None:
            recipe = dataclasses.replace(recipe, epochs=self.config.epochs)
        return train_or_load(backbone, id_spec.name, id_spec.num_classes, train, recipe, seed, self.compute, self.cache, self.forwarded)

    def _extraction(self, model: torch.nn.Module, checkpoint: Checkpoint, split: SplitArrays) -> Extraction:
        memo = f"{checkpoint.hash}/{split.content_hash}"
        if memo not in self._extractions:
            self._extractions[memo] = extract(
                model, checkpoint.hash, split, self.compute, self.cache, self.config.batch_size, self.forwarded
            )
        return self._extractions[memo]

    def _representations(self, split: SplitArrays, caps: Capabilities, network: Network) -> Representations:
        device, model = self.compute.device, network.model
        reps = Representations(labels=torch.as_tensor(np.asarray(split.labels)).to(device), num_classes=model.num_classes,
                               seed=network.seed)
        if caps.extracted:
            extraction = self._extraction(model, network.checkpoint, split)
            if Reads.LOGITS in caps.reads:
                reps.logits = torch.from_numpy(np.asarray(extraction.logits)).to(device)
            if Reads.FEATURES in caps.reads:
                reps.features = torch.from_numpy(np.asarray(extraction.features)).to(device)
        if Reads.HEAD in caps.reads:
            reps.head = model.head()
        if Reads.IMAGES in caps.reads:
            reps.images = ImageBatches(
                model=model,
                batches=lambda: pixel_batches(split.images, self.config.batch_size, device, self.compute.channels_last),
                count=len(split),
                precision=self.compute.autocast,
                on_batch=self.forwarded,
            )
        return reps

    def _fitted(self, plan: PlannedMethod, fit_key: str, train: SplitArrays, network: Network) -> tuple[Method, float]:
        artifact = self.cache.get(FIT_STAGE, fit_key)
        if artifact is not None:
            return torch.load(artifact.file("method.pt"), map_location=self.compute.device, weights_only=False), artifact.meta["seconds"]
        method = plan.cls(plan.params)
        representations = self._representations(train, plan.capabilities, network)
        representations.scratch = self.cache.scratch(FIT_STAGE, fit_key)
        torch.manual_seed(network.seed)
        started = time.perf_counter()
        method.fit(representations)
        seconds = time.perf_counter() - started
        if seconds >= 1:  # a training stage worth naming (GAN, statistics over a large split)
            self.say(f"  {plan.name}: fitted on {train.label} in {seconds:.0f} s")
        self.cache.drop_scratch(FIT_STAGE, fit_key)
        try:
            with self.cache.put(FIT_STAGE, fit_key, {"method": plan.name, "seconds": seconds}) as directory:
                torch.save(method, directory / "method.pt")
        except (pickle.PicklingError, TypeError, AttributeError, RuntimeError) as error:  # unpicklable fitted state
            self.say(f"note: fitted state of {plan.name} cannot be cached ({error}); it is refitted on the next run")
        return method, seconds

    def _scores(self, plan: PlannedMethod, splits: list[SplitArrays], train: SplitArrays | None, network: Network) -> tuple[dict[str, ScoredSplit], float]:
        """Scores of every split, from the cache or computed (fitting first when needed), and the fit time."""
        caps = plan.capabilities
        fit_key = stable_hash(
            {
                **_method_identity(plan),
                "checkpoint": network.checkpoint.hash,
                "train": train.content_hash if caps.fits else None,
                "precision": self.compute.precision,
                "seed": network.seed,
            }
        )
        method, fit_seconds = None, 0.0
        scored: dict[str, ScoredSplit] = {}
        for split in splits:
            key = stable_hash({"fit": fit_key, "split": split.content_hash})
            artifact = self.cache.get(SCORE_STAGE, key)
            if artifact is None:
                if method is None:
                    method, fit_seconds = self._fitted(plan, fit_key, train, network) if caps.fits else (plan.cls(plan.params), 0.0)
                representations = self._representations(split, caps, network)
                torch.manual_seed(network.seed)
                started = time.perf_counter()
                values = method.score(representations)
                elapsed = time.perf_counter() - started
                values = values.detach().float().cpu().numpy().reshape(-1)
                if values.shape[0] != len(split):
                    raise RuntimeError(f"score() returned {values.shape[0]} scores for {len(split)} samples of {split.label}")
                meta = {"method": plan.name, "split": split.label, "seconds": elapsed, "fit_seconds": fit_seconds}
                with self.cache.put(SCORE_STAGE, key, meta) as directory:
                    save_array(directory, "scores", values)
                artifact = self.cache.open(SCORE_STAGE, key)
            fit_seconds = fit_seconds or artifact.meta.get("fit_seconds", 0.0)
            scored[split.label] = ScoredSplit(artifact.array("scores"), artifact.meta["seconds"], key)
        return scored, fit_seconds

    # -- the run --------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        started = time.time()
        config = self.config
        id_spec = self.registry.dataset(config.id_dataset)
        if id_spec.role != "id":
            raise ConfigError(f"--id {id_spec.name}: the dataset has role '{id_spec.role}', not 'id'", "choose a dataset listed with role id")
        backbone = self.registry.backbone(config.backbone)
        ood_specs = [self.registry.dataset(name) for name in config.ood]
        if not ood_specs:
            raise ConfigError(f"no OOD datasets given and '{id_spec.name}' has no default list", "pass --ood NAME[,NAME...]")
        plans = self._plan_methods(id_spec.name)
        modes = {seed: self._checkpoint_mode(backbone, id_spec, seed) for seed in config.seeds}
        needs_train = any(p.capabilities.fits or p.capabilities.trains for p in plans) or "train" in modes.values()
        aux_spec = self._aux_spec(plans)

        fmt = ImageFormat(backbone.input_size, backbone.channels)
        id_test = self.split(id_spec, evaluation_split(id_spec), fmt, config.limit)
        oods = [self.split(spec, evaluation_split(spec), fmt, config.limit) for spec in ood_specs]
        train = self.split(id_spec, "train", fmt, config.train_limit) if needs_train else None
        aux = self.split(aux_spec, "train" if "train" in aux_spec.splits else evaluation_split(aux_spec), fmt, None) if aux_spec else None

        run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        provenance = {
            "datasets": {s.label: {"content_hash": s.content_hash, "count": len(s), "notes": list(s.notes)} for s in [id_test, *oods, *([train] if train else []), *([aux] if aux else [])]},
            "compute": self.compute.describe(),
            "checkpoints": {},
        }
        self.store.start_run(
            run_id, command=config.command, config=_config_record(config), versions=package_versions(),
            git_commit=git_commit(), hardware=hardware(),
        )
        status = "failed"
        try:
            for seed in config.seeds:
                network = self._network(self._checkpoint(modes[seed], backbone, id_spec, train, seed), id_test, seed)
                self._check_accuracy(network, id_spec, id_test)
                checkpoint = network.checkpoint
                provenance["checkpoints"][str(seed)] = {"hash": checkpoint.hash, "origin": checkpoint.origin,
                                                        "id_accuracy": network.id_accuracy, "info": checkpoint.info}
                trained = checkpoint.info.get("wall_seconds")
                history = f", trained {checkpoint.info['epochs']} epochs in {trained:.0f} s" if trained else ""
                self.say(f"seed {seed}: {checkpoint.origin} (hash {checkpoint.hash[:12]}{history}), "
                         f"ID accuracy on {id_test.label}: {network.id_accuracy:.4f}")
                data = RunData(id_spec, id_test, oods, train, aux)
                for plan in plans:
                    self.store.add_results(self._evaluate(plan, run_id, backbone, network, data))
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            wall = time.time() - started
            provenance["notes"] = self.notes
            self.store.finish_run(run_id, status, wall_time_s=wall, images_forwarded=self.forwarded.images,
                                  stages=self.cache.summary(), provenance=provenance)
        return RunOutcome(run_id, self.store.results(run_id), self.forwarded.images, wall, self.cache.summary(), self.notes)

    def _network(self, checkpoint: Checkpoint, id_test: SplitArrays, seed: int) -> Network:
        """The checkpoint's model on the device, with its accuracy on the ID test split."""
        model = self.compute.prepare(checkpoint.model).eval()
        id_accuracy = accuracy(self._extraction(model, checkpoint, id_test).logits, id_test.labels)
        return Network(checkpoint, model, id_accuracy, seed)

    def _aux_spec(self, plans: list[PlannedMethod]) -> DatasetSpec | None:
        """The auxiliary outlier dataset, when a planned method trains with one."""
        needing = [p.name for p in plans if p.capabilities.aux]
        if not needing:
            return None
        if not self.config.aux:
            aux_sets = sorted(n for n, spec in self.registry.datasets.items() if spec.role == "aux") or ["none registered"]
            raise ConfigError(f"method(s) {', '.join(needing)} train with auxiliary outliers but no --aux was given",
                              f"pass --aux NAME; datasets with role aux: {', '.join(aux_sets)}")
        spec = self.registry.dataset(self.config.aux)
        if spec.role != "aux":
            raise ConfigError(f"--aux {spec.name} has role '{spec.role}': training on an evaluation set would leak it into the results",
                              "use a dataset of role aux (oodbench list datasets)")
        return spec

    def _trained_network(self, plan: PlannedMethod, base: Network, data: RunData) -> Network:
        """The classifier fine-tuned by a training-time method, from the cache or trained now."""
        caps = plan.capabilities
        key = stable_hash({**_method_identity(plan), "base": base.checkpoint.hash, "train": data.train.content_hash,
                           "aux": data.aux.content_hash if caps.aux else None, "seed": base.seed,
                           "precision": self.compute.precision})
        model = copy.deepcopy(base.model)
        artifact = self.cache.get(FINETUNE_STAGE, key)
        if artifact is None:
            context = TrainingContext(
                model=model, id_images=data.train.images, id_labels=np.asarray(data.train.labels),
                aux_images=data.aux.images if caps.aux else None, num_classes=model.num_classes, seed=base.seed,
                device=self.compute.device, channels_last=self.compute.channels_last, precision=self.compute.autocast,
                scratch=self.cache.scratch(FINETUNE_STAGE, key), desc=f"{plan.name} (seed {base.seed})",
                on_images=self.forwarded,
            )
            torch.manual_seed(base.seed)
            started = time.perf_counter()
            info = plan.cls(plan.params).train(context) or {}
            info = {**info, "train_seconds": time.perf_counter() - started, "method": plan.name, "base": base.checkpoint.origin}
            with self.cache.put(FINETUNE_STAGE, key, info) as directory:
                torch.save(model.state_dict(), directory / "model.pt")
            self.cache.drop_scratch(FINETUNE_STAGE, key)
            artifact = self.cache.open(FINETUNE_STAGE, key)
        else:
            model.load_state_dict(torch.load(artifact.file("model.pt"), map_location=self.compute.device, weights_only=True))
        checkpoint = Checkpoint(model, key, f"{plan.name} fine-tune of {base.checkpoint.origin}", None, dict(artifact.meta))
        network = self._network(checkpoint, data.id_test, base.seed)
        self.say(f"  {plan.name}: fine-tuned in {artifact.meta['train_seconds']:.0f} s, ID accuracy "
                 f"{network.id_accuracy:.4f} (base {base.id_accuracy:.4f})")
        return network

    def _row_base(self, plan: PlannedMethod, run_id: str, backbone: BackboneSpec, network: Network, data: "RunData") -> dict:
        """The columns every result row of one method shares."""
        checkpoint, caps = network.checkpoint, plan.capabilities
        return {
            "run_id": run_id,
            "method": plan.name,
            "params": dataclasses.asdict(plan.params),
            "params_hash": stable_hash(dataclasses.asdict(plan.params), 12),
            "method_version": code_version(plan.cls),
            "backbone": backbone.name,
            "checkpoint": checkpoint.hash,
            "checkpoint_origin": checkpoint.origin,
            "id_dataset": data.id_spec.name,
            "aux_dataset": data.aux.dataset if caps.aux and data.aux is not None else None,
            "seed": network.seed,
            "id_accuracy": network.id_accuracy,
            "train_time_s": checkpoint.info.get("train_seconds") if caps.trains else None,
            "n_id": len(data.id_test),
            "protocol": {"fit_split": data.train.label if caps.fits else None, "reads": caps.describe(),
                         "id_split": data.id_test.label, "precision": self.compute.precision,
                         "trained_on": data.train.label if caps.trains else None,
                         "aux_split": data.aux.label if caps.aux and data.aux is not None else None},
        }

    def _check_accuracy(self, network: Network, id_spec: DatasetSpec, id_test: SplitArrays) -> None:
        checkpoint, observed = network.checkpoint, network.id_accuracy
        known = checkpoint.known
        if known is None or known.expected_accuracy is None or known.dataset != id_spec.name:
            return
        expected = known.expected_accuracy
        tolerance = known.tolerance + 2 * math.sqrt(expected * (1 - expected) / len(id_test))
        if abs(observed - expected) > tolerance:
            note = (f"warning: {checkpoint.origin} reaches {observed:.4f} on {id_test.label}, expected "
                    f"{expected:.4f} +- {tolerance:.4f} ({known.accuracy_source}): check the data and preprocessing")
            self.notes.append(note)
            self.say(note)

    def _evaluate(self, plan: PlannedMethod, run_id: str, backbone: BackboneSpec, base_network: Network, data: "RunData") -> list[dict]:
        """Result rows of one method for every OOD set (failed rows when the method raises)."""
        id_test, oods, train = data.id_test, data.oods, data.train
        if self.compute.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.compute.device)
        try:
            network = self._trained_network(plan, base_network, data) if plan.capabilities.trains else base_network
            scored, fit_seconds = self._scores(plan, [id_test, *oods], train, network)
        except Exception as error:  # a failing method marks its cells failed; the run goes on
            message = f"{type(error).__name__}: {error}"
            self.say(f"error: method {plan.name} failed: {message}\n{traceback.format_exc(limit=-3)}")
            self.notes.append(f"method {plan.name} failed: {message}")
            base = self._row_base(plan, run_id, backbone, base_network, data)
            return [{**base, "ood_dataset": s.dataset, "n_ood": len(s), "status": "failed", "error": message} for s in oods]
        base = self._row_base(plan, run_id, backbone, network, data)
        memory = peak_memory_mb(self.compute.device)
        id_scored = scored[id_test.label]
        id_path = self.store.save_scores(id_scored.key, id_scored.scores)
        rows = []
        for split in oods:
            ood_scored = scored[split.label]
            row = {
                **base,
                "ood_dataset": split.dataset,
                "n_ood": len(split),
                "fit_time_s": fit_seconds,
                "score_time_s": id_scored.seconds + ood_scored.seconds,
                "peak_memory_mb": memory,
                "id_scores_path": id_path,
                "ood_scores_path": self.store.save_scores(ood_scored.key, ood_scored.scores),
                **_metric_cells(id_scored.scores, ood_scored.scores),
            }
            rows.append(row)
        return rows


def _method_identity(plan: PlannedMethod) -> dict:
    """What identifies a method's computation: the method (not a variant's label), parameters, its
    source code, pytorch-ood's version."""
    return {"method": plan.cls.name, "params": dataclasses.asdict(plan.params), "code": code_version(plan.cls),
            "pytorch_ood": pytorch_ood.__version__}


def _metric_cells(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict:
    """Metric columns of one cell; non-finite scores are reported, never averaged in."""
    bad_id, bad_ood = int((~np.isfinite(id_scores)).sum()), int((~np.isfinite(ood_scores)).sum())
    cells = {"nonfinite_id": bad_id, "nonfinite_ood": bad_ood}
    if bad_id or bad_ood:
        return {**cells, "status": "nonfinite", "error": f"{bad_id} ID and {bad_ood} OOD scores are NaN or infinite",
                **{name: None for name in METRIC_NAMES}}
    return {**cells, "status": "ok", **detection_metrics(id_scores, ood_scores).as_dict()}


def _config_record(config: RunConfig) -> dict:
    return {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in dataclasses.asdict(config).items()}
