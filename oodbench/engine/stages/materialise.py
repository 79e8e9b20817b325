"""``materialise``: a dataset split decoded once into cached uint8 arrays, limited to a subset.

At plan time the split's key comes from its source's checksums alone. A split whose files are
missing gets no key; planning for a run downloads them first (when allowed), planning to show a
plan names the download instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from oodbench.api import DatasetSpec
from oodbench.data.arrays import STAGE, arrays_key, materialize, split_key, split_source
from oodbench.data.source import ImageFormat
from oodbench.engine.estimate import Work
from oodbench.engine.plan import Resources, Task
from oodbench.errors import DataError


@dataclass(frozen=True)
class PlannedSplit:
    """A split as the plan knows it before it is decoded."""

    task: str
    spec: DatasetSpec
    split: str
    key: str | None
    count: int | None
    #: the split as decoded: dataset, split, image format and subset limit (unique in a plan, unlike ``label``)
    ident: str

    @property
    def label(self) -> str:
        return f"{self.spec.name}/{self.split}"


def _expected_count(ctx, source, key: str | None) -> int | None:
    if key is not None:
        artifact = ctx.cache.open(STAGE, key)
        if artifact is not None:
            return int(artifact.meta["count"])
    return source.expected_count()


def plan_split(ctx, spec: DatasetSpec, split: str, fmt: ImageFormat, limit: int | None, fetch: bool) -> tuple[Task, PlannedSplit]:
    """The materialise task of one split and what downstream tasks need to know of it.

    ``fetch``: download missing files now (planning for a run); otherwise a missing download
    leaves the key unknown and the task names what it needs.
    """
    source = split_source(spec, split)
    key, needs, fix = None, None, None
    try:
        if fetch:
            source.fetch(ctx.sources)
        key = arrays_key(source, source.identity(ctx.sources), fmt)
    except DataError as error:
        if fetch:
            raise
        url = getattr(source, "url", None)
        needs, fix = (f"download {url}" if url else error.message), error.fix
    total = _expected_count(ctx, source, key)
    count = None if total is None else (total if limit is None else min(limit, total))
    rate = ctx.throughput.key("decode", type(source).__name__)

    def run(ctx, inputs):
        return materialize(spec, split, fmt, ctx.sources, ctx.cache, limit,
                           on_computed=lambda images, seconds: ctx.throughput.record(rate, images, seconds))

    size = fmt.size * fmt.size * fmt.channels
    ident = f"{spec.name}/{split}@{fmt.describe()}" + (f"[{limit}]" if limit else "")
    task = Task(
        id=f"materialise:{ident}",
        kind=STAGE, label=f"{spec.name}/{split} ({fmt.describe()}" + (f", {count} images)" if count else ")"),
        key=key, run=run, resources=Resources("cpu", (total or 0) * size / 2**20), work=Work(rate, total), needs=needs,
        fix=fix,
    )
    return task, PlannedSplit(task.id, spec, split, None if key is None else split_key(key, limit), count, ident)
