"""Data-parallel training with ``torch.distributed`` (DDP): one process per GPU, launched by ``torchrun``.

Every rank walks the same global batches (same seed, same order, same augmentation draws) and
keeps its slice of each (:meth:`World.shard`); DDP averages the ranks' gradients, and each rank
weighs its mean loss by its share of the batch (:meth:`World.weight`), so the average is the
gradient of the mean loss over the global batch, also when a batch does not split evenly.
So training on N ranks takes the steps single-process training takes on the same global batches,
up to float rounding. On CUDA, batch-norm layers become ``SyncBatchNorm`` (statistics over the
global batch); CPU processes (the ``gloo`` backend, for tests) keep per-rank statistics, so there
only networks without batch norm train exactly alike.

Rank 0 is the one writer: it saves the resumable epoch state and the finished artifact; the other
ranks read the same scratch directory to resume (the artifact cache must be on storage all ranks see).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from oodbench.engine.cache import Artifact, ArtifactCache

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> "World":
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def writer(self) -> bool:
        """Whether this process writes shared state (rank 0)."""
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` itself in one process, else inside DDP (with synchronised batch norm on CUDA)."""
        if self.size == 1:
            return model
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            index = device.index if device.index is not None else torch.cuda.current_device()
            return nn.parallel.DistributedDataParallel(model, device_ids=[index])
        return nn.parallel.DistributedDataParallel(model)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a global batch (sizes differ by at most one)."""
        if self.size == 1:
            return batch
        if len(batch) < self.size:
            raise ValueError(f"a batch of {len(batch)} cannot feed {self.size} processes: use fewer processes or larger batches")
        return batch.tensor_split(self.size)[self.rank]

    def weight(self, local: int, total: int) -> float:
        """The factor of a rank's mean loss over ``local`` of ``total`` samples that makes DDP's average
        of the gradients the gradient of the mean over all ``total``."""
        return local * self.size / total

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (equal slices: the global batch's mean)."""
        if self.size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total.item()) / self.size


def cached(cache: ArtifactCache, stage: str, key: str, compute: Callable[[Path], dict[str, Any]],
           load: Callable[[Artifact], T]) -> T:
    """:meth:`ArtifactCache.cached` on rank 0; the other ranks of a process group load a finished artifact
    or compute beside rank 0 (a training's collective steps need them all) into a directory of their own."""
    if World.current().writer:
        return cache.cached(stage, key, compute, load)
    artifact = cache.open(stage, key)
    if artifact is not None:
        return load(artifact)
    with tempfile.TemporaryDirectory() as directory:
        return load(Artifact(Path(directory), compute(Path(directory))))


def join_from_environment() -> World:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment): NCCL on
    CUDA, each rank on its ``LOCAL_RANK`` GPU, else gloo. Without it, a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return World.current()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return World.current()
