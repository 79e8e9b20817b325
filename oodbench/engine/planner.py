"""Resolve a grid of :class:`RunConfig` (one per ID dataset and backbone) into one :class:`Plan`,
from what the plugins declare.

Work two parts of a grid share (a decoded split, its fingerprints, a hygiene check) is planned once.
Per ID dataset, backbone and seed: the checkpoint and its ID-test extraction (ID accuracy); per method entry: its
fine-tuned network when it trains, the extractions it reads (planned once per network and split,
shared by every method), its fit on the ID training split when it fits, one score task per split
(ordered by content key, so the ID split's position says nothing) and one metrics task per OOD
set. Nothing here knows a method, dataset or backbone by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from oodbench.api import DatasetSpec
from oodbench.attacks import AttackSpec, parse_attack
from oodbench.config import RunConfig
from oodbench.data.arrays import evaluation_split, training_split
from oodbench.data.source import ImageFormat
from oodbench.engine.entries import MethodEntry, method_entries
from oodbench.engine.plan import Cell, Plan, Task
from oodbench.engine.protocol_version import protocol_version
from oodbench.engine.records import static_columns
from oodbench.engine.stages.attack import plan_attack
from oodbench.engine.stages.checkpoint import plan_checkpoint, published_weights
from oodbench.engine.stages.extract import plan_extract
from oodbench.engine.stages.finetune import plan_finetune
from oodbench.engine.stages.fingerprint import plan_fingerprint
from oodbench.engine.stages.fit import plan_fit
from oodbench.engine.stages.materialise import PlannedSplit, plan_split
from oodbench.engine.stages.metrics import plan_metrics
from oodbench.engine.stages.overlap import plan_overlap
from oodbench.engine.stages.score import plan_score
from oodbench.engine.stages.tune import plan_tune
from oodbench.models.checkpoints import build_classifier
from oodbench.models.layers import LayerRead
from oodbench.registry import Registry

#: ID training images held out as the ID side of --tune's validation data (a fifth of a smaller training split)
TUNE_IMAGES = 1000


def _announce_base(id_test: PlannedSplit, seed: int) -> Callable:
    def announce(ctx, inputs, extraction) -> None:
        network = inputs["network"]
        trained = network.info.get("wall_seconds")
        history = f", trained {network.info['epochs']} epochs in {trained:.0f} s" if trained else ""
        ctx.say(f"seed {seed}: {network.origin} (hash {network.key[:12]}{history}), "
                f"ID accuracy on {id_test.label}: {extraction.accuracy:.4f}")
        known = network.known
        if known is not None and known.expected_accuracy is not None and known.dataset == id_test.spec.name:
            expected, count = known.expected_accuracy, id_test.count or 1
            tolerance = known.tolerance + 2 * math.sqrt(expected * (1 - expected) / count)
            if abs(extraction.accuracy - expected) > tolerance:
                ctx.note(f"warning: {network.origin} reaches {extraction.accuracy:.4f} on {id_test.label}, expected "
                         f"{expected:.4f} +- {tolerance:.4f} ({known.accuracy_source}): check the data and preprocessing")
    return announce


def _announce_finetune(label: str) -> Callable:
    def announce(ctx, inputs, extraction) -> None:
        ctx.say(f"  {label}: fine-tuned in {inputs['network'].info['train_seconds']:.0f} s, "
                f"ID accuracy {extraction.accuracy:.4f}")
    return announce


@dataclass
class _Shared:
    """What the parts of a grid plan into together."""

    plan: Plan = field(default_factory=lambda: Plan({}, [], {}))
    #: planned splits by (dataset, split, image format, limit)
    splits: dict[tuple, PlannedSplit] = field(default_factory=dict)
    #: overlap task ids by (first split, second split) (:attr:`PlannedSplit.ident`)
    overlaps: dict[tuple[str, str], str] = field(default_factory=dict)


class _Planner:
    """Plans one (ID dataset, backbone) of a grid into the shared plan."""

    def __init__(self, config: RunConfig, registry: Registry, ctx, fetch: bool, shared: _Shared) -> None:
        self.config, self.registry, self.ctx, self.fetch = config, registry, ctx, fetch
        self.id_spec = registry.dataset(config.id_dataset)
        #: the spec whose near/far-OOD lists apply: a copy that declares none takes those of what it stands for
        self.grouping = self.id_spec
        if not (self.id_spec.near_ood or self.id_spec.far_ood) and self.id_spec.same_as in registry.datasets:
            self.grouping = registry.datasets[self.id_spec.same_as]
        self.backbone = registry.backbone(config.backbone)
        self.fmt = ImageFormat.of(self.backbone)
        weights = sum(p.numel() for p in build_classifier(self.backbone, self.id_spec.num_classes).parameters())
        self.model_mb = weights * 4 / 2**20
        self.row_width = self.backbone.feature_dim + self.id_spec.num_classes
        self.plan, self.splits, self.overlaps = shared.plan, shared.splits, shared.overlaps
        #: the covariate-shifted ID sets' test splits under --full-spectrum (planned in build)
        self.shifted: list[PlannedSplit] = []
        #: the intermediate layers any method of the run reads, extracted with the splits it scores, and those
        #: that methods fitted or tuned on other splits read there (set in build)
        self.layer_reads: tuple[LayerRead, ...] = ()
        self.support_layer_reads: tuple[LayerRead, ...] = ()
        self.scored: set[str] = set()

    def split(self, spec: DatasetSpec, split: str, limit: int | None) -> PlannedSplit:
        where = (spec.name, split, self.fmt, limit)
        if where not in self.splits:
            task, planned = plan_split(self.ctx, spec, split, self.fmt, limit, self.fetch)
            self.plan.add(task)
            self.splits[where] = planned
        return self.splits[where]

    def train(self) -> PlannedSplit:
        return self.split(self.id_spec, "train", self.config.train_limit)

    def aux(self, entry: MethodEntry) -> PlannedSplit | None:
        spec = self.registry.dataset(entry.aux) if entry.aux else None
        return self.split(spec, training_split(spec), None) if spec else None

    def id_splits(self, id_test: PlannedSplit) -> list[PlannedSplit]:
        return [id_test, *self.shifted, *([self.train()] if "train" in self.id_spec.splits else [])]

    def id_side(self, id_test: PlannedSplit) -> str | tuple[str, ...]:
        """The label(s) of the splits on the ID side of every metric: the ID test split, and under
        --full-spectrum the covariate-shifted sets after it."""
        return (id_test.label, *(split.label for split in self.shifted)) if self.shifted else id_test.label

    def hygiene(self, entries: list[MethodEntry], id_test: PlannedSplit, oods: list[PlannedSplit]) -> None:
        """The data-hygiene checks, before any work that uses the data: each auxiliary set against the
        ID splits and every OOD set, and the ID splits against every OOD set."""
        def check(first: PlannedSplit, second: PlannedSplit) -> None:
            prints = [self.plan.tasks[self.plan.add(plan_fingerprint(self.ctx, split))] for split in (first, second)]
            task = plan_overlap(self.ctx, first, second, *prints)
            task.announce = lambda ctx, inputs, found: ctx.note(f"hygiene: {found.describe()}") if found.flagged else None
            self.overlaps[(first.ident, second.ident)] = self.plan.add(task)

        for aux in {split.label: split for split in map(self.aux, entries) if split}.values():
            for other in [*self.id_splits(id_test), *oods]:
                check(aux, other)
        for id_split in self.id_splits(id_test):
            for ood in oods:
                check(id_split, ood)

    def checks(self, entry: MethodEntry, id_test: PlannedSplit, ood: PlannedSplit) -> tuple[str, ...]:
        """The overlap tasks that concern a cell of ``entry`` on ``ood``: the ID splits against the OOD
        set, and the method's auxiliary set against the OOD set and the ID splits."""
        aux = self.aux(entry)
        pairs = [(s.ident, ood.ident) for s in self.id_splits(id_test)]
        if aux is not None:
            pairs += [(aux.ident, s.ident) for s in (ood, *self.id_splits(id_test))]
        return tuple(self.overlaps[pair] for pair in pairs)

    def extract(self, network: Task, name: str, split: PlannedSplit, group: str | None = None, announce=None) -> Task:
        layers = self.layer_reads if split.ident in self.scored else self.support_layer_reads  # no maps of a training split no one reads
        task = plan_extract(self.ctx, network, name, split, self.backbone, self.id_spec.num_classes, self.model_mb, group, layers)
        task.announce = task.announce or announce
        return self.plan.tasks[self.plan.add(task)]

    def method(self, entry: MethodEntry, seed: int, base: Task, base_accuracy: Task, id_test: PlannedSplit,
               oods: list[PlannedSplit]) -> None:
        caps, add = entry.caps, (lambda task: self.plan.tasks[self.plan.add(task)])
        network, accuracy, group = base, base_accuracy, (None if not caps.trains else entry.label)
        name = f"{entry.label}'s network (seed {seed})" if caps.trains else f"{self.backbone.name} (seed {seed})"
        aux = self.aux(entry)
        if caps.trains:
            network = add(plan_finetune(self.ctx, entry, base, f"{self.backbone.name} (seed {seed})", self.train(), aux, seed,
                                        self.backbone, self.model_mb))
            accuracy = self.extract(network, name, id_test, group, _announce_finetune(entry.label))
        fit = fit_on = fit_extraction = tune = holdout = None
        if caps.fits:
            fit_on = self.train() if entry.fit_split == "train" else self.split(self.id_spec, entry.fit_split, self.config.limit)
            fit_extraction = self.extract(network, name, fit_on, group) if caps.extracted else None
        if self.config.tune and entry.search_space and not caps.trains:
            validation = self.validation()
            holdout = validation[0] if fit_on is not None and fit_on.split == validation[0].split else None
            tune = add(self.tuning(entry, network, name, fit_on, fit_extraction, group, seed, validation))
        if caps.fits:
            fit = add(plan_fit(self.ctx, entry, network, fit_on, fit_extraction, seed, self.row_width, tune, holdout))
        id_side = [id_test, *self.shifted]
        extractions = {split.label: self.extract(network, name, split, group) for split in [*id_side, *oods]} if caps.extracted else {}
        scores = add(plan_score(self.ctx, entry, network, [*((split, "id") for split in id_side), *((split, "ood") for split in oods)],
                                extractions, fit, seed, self.backbone, self.row_width, tune))
        shifted = {split.spec.name: self.extract(network, name, split, group) for split in self.shifted}
        chain = tuple(t.id for t in [network if caps.trains else None, tune, fit, scores] if t is not None)
        for split in oods:
            metrics = add(plan_metrics(network, accuracy, (scores, self.id_side(id_test)), (scores, split.label), fit, caps.trains,
                                       entry.label, f"{entry.label} on {split.spec.name} (seed {seed})", shifted))
            self.plan.cells.append(Cell(entry.label, seed, split.spec.name, metrics.id, chain, base.id, base_accuracy.id,
                                        self.static(entry, seed, id_test, split, aux, fit_on, holdout),
                                        self.checks(entry, id_test, split), (self.id_side(id_test), split.label)))
        for spec in map(parse_attack, self.config.attacks):
            self.attacked(entry, seed, spec, network, accuracy, fit, scores, extractions, id_test, oods, base, base_accuracy,
                          aux, tune, fit_on, holdout)

    def validation(self) -> list[PlannedSplit]:
        """``--tune``'s validation data: the ID set's ``val`` split and the validation OOD set it declares
        (:attr:`DatasetSpec.validation_ood`, all of both), else a slice of the ID training split
        (:data:`TUNE_IMAGES` of it, held out of the fits of tuned methods) and ``--tune-ood``."""
        declared = self.id_spec.validation_ood
        if declared:
            ood_spec = self.registry.dataset(declared)
            return [self.split(self.id_spec, "val", None), self.split(ood_spec, evaluation_split(ood_spec), None)]
        ood_spec = self.registry.dataset(self.config.tune_ood)
        ood_split = training_split(ood_spec) if ood_spec.role == "aux" else evaluation_split(ood_spec)
        train = self.train().count
        images = TUNE_IMAGES if train is None else max(1, min(TUNE_IMAGES, train // 5))  # most of a small split stays to fit on
        return [self.split(self.id_spec, "train", images), self.split(ood_spec, ood_split, images)]

    def tuning(self, entry: MethodEntry, network: Task, name: str, fit_on: PlannedSplit | None, fit_extraction: Task | None,
               group: str | None, seed: int, validation: list[PlannedSplit]) -> Task:
        """The search of ``entry``'s grid on ``validation`` data."""
        extracted = [self.extract(network, name, split, group) if entry.caps.extracted else None for split in validation]
        return plan_tune(self.ctx, entry, network, fit_on, fit_extraction, *zip(validation, extracted, strict=True), seed)

    def attacked(self, entry: MethodEntry, seed: int, spec: AttackSpec, network: Task, accuracy: Task, fit: Task | None,
                 clean: Task, extractions: dict[str, Task], id_test: PlannedSplit, oods: list[PlannedSplit], base: Task,
                 base_accuracy: Task, aux: PlannedSplit | None, tune: Task | None, fit_on: PlannedSplit | None,
                 holdout: PlannedSplit | None) -> None:
        """The cells of ``entry`` under ``spec``: attacked ID and / or OOD scores, or 'not attacked' cells."""
        add = lambda task: self.plan.tasks[self.plan.add(task)]  # noqa: E731
        round_splits = [(id_test, "id"), *((split, "ood") for split in oods)]

        def scores(split: PlannedSplit, toward_ood: bool) -> tuple[Task, str]:
            if not spec.attacks("id" if toward_ood else "ood"):
                return clean, split.label
            others = [(other, role) for other, role in round_splits if other.label != split.label]
            return add(plan_attack(self.ctx, entry, network, split, others, extractions, fit, spec, toward_ood, seed,
                                   self.backbone, self.model_mb, self.fmt.size * self.fmt.size * self.fmt.channels, tune)), split.label

        id_scores = scores(id_test, True) if entry.caps.attack else None
        for split in oods:
            static = {**self.static(entry, seed, id_test, split, aux, fit_on, holdout), "attack": spec.describe()}
            if entry.caps.attack is None:
                self.plan.cells.append(Cell(entry.label, seed, split.spec.name, None, (), base.id, base_accuracy.id, static,
                                            self.checks(entry, id_test, split)))
                continue
            ood_scores = scores(split, False)
            metrics = add(plan_metrics(network, accuracy, id_scores, ood_scores, fit, entry.caps.trains, entry.label,
                                       f"{entry.label} on {split.spec.name} under {spec.name} (seed {seed})"))
            chain = tuple(dict.fromkeys(t.id for t in (tune, fit, id_scores[0], ood_scores[0]) if t is not None))
            self.plan.cells.append(Cell(entry.label, seed, split.spec.name, metrics.id, chain, base.id, base_accuracy.id, static,
                                        self.checks(entry, id_test, split), (id_test.label, split.label)))

    def static(self, entry: MethodEntry, seed: int, id_test: PlannedSplit, ood: PlannedSplit, aux: PlannedSplit | None,
               fit_on: PlannedSplit | None, holdout: PlannedSplit | None) -> dict:
        fit_split = None if fit_on is None else fit_on.label + (
            f" without the {holdout.count}-image validation slice of --tune" if holdout is not None else "")
        protocol = self.registry.protocol(self.config.protocol)
        return static_columns(entry, seed, self.backbone.name, self.id_spec, self.grouping, id_test, ood, aux, fit_split,
                              protocol, self.ctx.compute.precision, self.config.sealed, [split.label for split in self.shifted],
                              protocol_version(protocol, self.registry.methods, self.grouping))

    def ordered(self, reads) -> tuple[LayerRead, ...]:
        """Distinct layer reads in the backbone's forward order."""
        order = list(self.backbone.layers)
        return tuple(sorted(set(reads), key=lambda read: (order.index(read[0]), read[1].value)))

    def build(self) -> dict:
        """Plan this part's tasks and cells; returns its description."""
        config = self.config
        entries = [e.searching() if config.tune and e.search_space and not e.caps.trains else e
                   for e in method_entries(config, self.registry, self.id_spec)]
        self.layer_reads = self.ordered(read for e in entries for read in e.layer_reads)
        self.support_layer_reads = self.ordered(read for e in entries if e.caps.fits or (config.tune and e.search_space)
                                                for read in e.layer_reads)
        id_test = self.split(self.id_spec, evaluation_split(self.id_spec), config.limit)
        if config.full_spectrum:
            self.shifted = [self.split(spec, evaluation_split(spec), config.limit)
                            for spec in map(self.registry.dataset, self.id_spec.covariate_shift)]
        oods = [self.split(spec, evaluation_split(spec), config.limit) for spec in map(self.registry.dataset, config.ood)]
        self.scored = {split.ident for split in [id_test, *self.shifted, *oods]}
        self.hygiene(entries, id_test, oods)
        for seed in config.seeds:
            published = published_weights(config, self.backbone, self.id_spec, seed) is not None
            trains = config.train and self.backbone.trainable and not config.checkpoint and not published
            checkpoint = plan_checkpoint(self.ctx, config, self.backbone, self.id_spec, seed, self.train() if trains else None,
                                         self.model_mb)
            base = self.plan.tasks[self.plan.add(checkpoint)]
            base_accuracy = self.extract(base, f"{self.backbone.name} (seed {seed})", id_test, announce=_announce_base(id_test, seed))
            for entry in entries:
                self.method(entry, seed, base, base_accuracy, id_test, oods)
        return {
            "id_dataset": self.id_spec.name, "stands_for": self.id_spec.stands_for, "backbone": self.backbone.name,
            "ood": list(config.ood), "num_classes": self.id_spec.num_classes, "methods": [e.label for e in entries],
            "aux": {e.label: e.aux for e in entries if e.aux}, "reduced": {e.label: e.reduced for e in entries if e.reduced},
        }


def build_plan(configs: Sequence[RunConfig], registry: Registry, ctx, fetch: bool) -> Plan:
    """The plan of a grid of ``configs``, which share every setting but the ID dataset, the backbone and
    the OOD sets. ``fetch``: download missing data while planning (for a run)."""
    shared = _Shared()
    grid = [_Planner(config, registry, ctx, fetch, shared).build() for config in configs]
    first = configs[0]
    shared.plan.header = {
        "preset": first.preset, "protocol": first.protocol, "seeds": list(first.seeds), "compute": ctx.compute.describe(),
        "methods": list(dict.fromkeys(label for part in grid for label in part["methods"])),
        "aux": {label: aux for part in grid for label, aux in part["aux"].items()},
        "reduced": {label: reduced for part in grid for label, reduced in part["reduced"].items()},
        "grid": grid,
    }
    plan = shared.plan
    plan.cached = {t.id for t in plan.tasks.values() if t.cached_in(ctx.cache)}
    return plan
