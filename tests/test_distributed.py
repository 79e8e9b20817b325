"""Data-parallel training: 2 processes on the gloo backend take the steps one process takes on the same
global batches, each working on its half of every batch, and only rank 0 writes the resumable state."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import store_rows
from torch import nn

from oodbench.api import TrainingRecipe
from oodbench.engine.device import select_compute
from oodbench.models.classifier import ImageClassifier
from oodbench.models.training import train_classifier

RECIPE = TrainingRecipe(epochs=2, lr=0.05, batch_size=16, crop_padding=2)
IMAGES = 80  # 5 global batches of 16 per epoch


class SmallNet(nn.Module):
    """A convolutional classifier without batch norm (CPU processes keep per-rank batch statistics)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 4)

    def features(self, x):
        return self.body(x)


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(IMAGES) % 4
    images = rng.integers(0, 200, (IMAGES, 8, 8, 3)).astype(np.uint8)
    images[np.arange(IMAGES), :, :, labels % 3] += 50  # a class shows in one channel's brightness
    return images, labels


def _train(scratch: Path) -> tuple[ImageClassifier, dict, int]:
    model = ImageClassifier(SmallNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    seen = []
    images, labels = _data()
    info = train_classifier(model, images, labels, RECIPE, seed=1, compute=select_compute("cpu", "fp32", False), scratch=scratch,
                            desc="test", on_images=seen.append)
    return model, info, sum(seen)


def _rank(rank: int, world: int, port: int, out: Path) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model, info, seen = _train(out / "scratch")
        torch.save(model.state_dict(), out / f"rank{rank}.pt")
        (out / f"rank{rank}.json").write_text(json.dumps({**info, "seen": seen}))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_gloo_processes_train_the_weights_one_process_trains(tmp_path):
    single, info, seen = _train(tmp_path / "single")
    mp.spawn(_rank, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for name, weight in single.state_dict().items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)  # DDP keeps the ranks identical
        torch.testing.assert_close(ranks[0][name], weight, rtol=1e-4, atol=1e-5)  # and equal to one process on the global batches
    assert not torch.allclose(single.net.fc.weight, SmallNet().fc.weight)  # it did train
    assert info["world_size"] == 1 and [i["world_size"] for i in infos] == [2, 2]
    assert seen == RECIPE.epochs * IMAGES and [i["seen"] for i in infos] == [seen // 2] * 2  # each rank took half of every batch
    assert abs(infos[0]["final_train_loss"] - info["final_train_loss"]) < 1e-4  # the loss is averaged over the ranks
    assert (tmp_path / "scratch" / "state.pt").is_file()  # rank 0 wrote the resumable state


def test_a_run_under_torchrun_trains_data_parallel_and_only_rank_0_records(tiny_catalog, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "oodbench", "run", "--preset", "smoke",
               "--id", "tiny", "--methods", "msp,oe", "--aux", "tiny-aux", "--catalog", str(tiny_catalog),
               "--results", str(tmp_path / "results"), "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("2/2 cells ok") == 1  # one process reports
    runs = store_rows(tmp_path / "results", "runs")
    assert len(runs) == 1 and runs[0]["status"] == "complete"
    provenance = json.loads(runs[0]["provenance"])
    assert provenance["plan"]["world_size"] == 2
    assert [c["info"]["world_size"] for c in provenance["checkpoints"].values()] == [2]
    assert len(store_rows(tmp_path / "results")) == 2
