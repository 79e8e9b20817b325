"""Adversarial evaluation: the PGD step, its bounds, the protocols, and attacked runs end to end."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import run_tiny, store_rows
from torch import nn

from oodbench.attacks import PROTOCOLS, AttackSpec, parse_attack, pgd
from oodbench.cli import main
from oodbench.errors import ConfigError
from oodbench.models.classifier import ImageClassifier


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.Tanh())
        self.fc = nn.Linear(16, 4)

    def features(self, x):
        return self.body(x)


def msp_outlier_score(model):
    return lambda pixels: -model.class_logits(pixels).softmax(1).max(1).values


@pytest.mark.parametrize("ascend", [True, False])
def test_pgd_moves_the_score_the_asked_way_within_the_ball_and_the_pixel_range(ascend):
    model = ImageClassifier(TinyNet(), (0.5,) * 3, (0.25,) * 3).eval()
    pixels = torch.rand(64, 3, 4, 4)
    pixels[:8] = 0.0  # at the border of [0, 1]: clipping must hold
    spec = AttackSpec("pgd", eps=8 / 255, steps=10, step_size=2 / 255, target="both")
    score = msp_outlier_score(model)
    attacked = pgd(score, pixels, spec, ascend, torch.Generator().manual_seed(0))
    assert (attacked - pixels).abs().max() <= spec.eps + 1e-6
    assert attacked.min() >= 0 and attacked.max() <= 1
    with torch.no_grad():
        before, after = score(pixels), score(attacked)
    moved = (after - before) if ascend else (before - after)
    assert moved.mean() > 0 and (moved > 0).float().mean() > 0.9


def test_one_pgd_step_without_random_start_is_a_signed_gradient_step():
    model = ImageClassifier(TinyNet(), (0.5,) * 3, (0.25,) * 3).eval()
    pixels = torch.rand(8, 3, 4, 4) * 0.5 + 0.25
    spec = AttackSpec("pgd", eps=0.1, steps=1, step_size=0.01, target="ood", random_start=False)
    score = msp_outlier_score(model)
    x = pixels.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(score(x).sum(), x)
    expected = pixels - 0.01 * gradient.sign()
    torch.testing.assert_close(pgd(score, pixels, spec, False, torch.Generator()), expected)


def test_attack_specs_parse_and_name_the_protocols():
    assert parse_attack("atom") == PROTOCOLS["atom"] and PROTOCOLS["atom"].attacks("ood") and not PROTOCOLS["atom"].attacks("id")
    assert PROTOCOLS["aloe"].attacks("id") and PROTOCOLS["aloe"].eps == pytest.approx(1 / 255)
    custom = parse_attack("pgd:eps=4/255,steps=5,step=1/255,target=id")
    assert (custom.eps, custom.steps, custom.step_size, custom.target) == (pytest.approx(4 / 255), 5, pytest.approx(1 / 255), "id")
    assert "40 steps of 1/255" in PROTOCOLS["atom"].describe()
    for wrong in ("fgsm", "pgd:eps=1", "pgd:eps=x,steps=1,step=1,target=ood", "pgd:eps=1,steps=1,step=1,target=all"):
        with pytest.raises(ConfigError):
            parse_attack(wrong)


def test_a_smoke_run_under_the_atom_protocol(catalog, shared_cache, tmp_path, capsys):
    """MSP's AUROC drops clearly under attack; a method without an attack route is reported, not skipped."""
    args = ["run", "--preset", "smoke", "--id", "cifar10-jpeg", "--ood", "mnist-test", "--methods", "msp,klmatching",
            "--attack", "atom", "--catalog", str(catalog), "--cache-dir", str(shared_cache), "--results", str(tmp_path / "r")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "under attack (atom: L-inf PGD eps 8/255, 40 steps of 1/255" in out and "(1 not attacked)" in out
    rows = {(r["method"], r["attack"].split(":")[0]): r for r in store_rows(tmp_path / "r")}
    clean, attacked = rows[("msp", "")], rows[("msp", "atom")]
    assert attacked["status"] == "ok" and attacked["auroc"] < clean["auroc"] - 0.2
    assert attacked["attack_passes"] == 40 * 300 and attacked["score_time_s"] > 0
    assert rows[("klmatching", "atom")]["status"] == "not attacked" and rows[("klmatching", "")]["status"] == "ok"
    assert main(args) == 0  # attacked scores are cached like clean ones
    assert "images through the classifier: 0" in capsys.readouterr().out


def test_an_attack_that_perturbs_only_id_inputs_keeps_clean_ood_scores(tiny_catalog, tmp_path, capsys):
    assert run_tiny(tiny_catalog, tmp_path / "results", "--methods", "energy",
                    "--attack", "pgd:eps=4/255,steps=3,step=2/255,target=id") == 0
    rows = {r["attack"] != "": r for r in store_rows(tmp_path / "results")}
    assert rows[True]["attack_passes"] == 3 * 50  # the 50 ID test images only
    assert rows[True]["auroc"] < rows[False]["auroc"]


def test_keep_best_returns_the_iterate_that_moved_each_score_furthest():
    model = ImageClassifier(TinyNet(), (0.5,) * 3, (0.25,) * 3).eval()
    pixels = torch.rand(32, 3, 4, 4)
    spec = AttackSpec("pgd", eps=16 / 255, steps=6, step_size=8 / 255, target="ood")  # large steps overshoot
    score = msp_outlier_score(model)
    last = pgd(score, pixels, spec, True, torch.Generator().manual_seed(3))
    best = pgd(score, pixels, spec, True, torch.Generator().manual_seed(3), keep_best=True)
    with torch.no_grad():
        assert (score(best) >= score(last) - 1e-6).all()
    assert (best - pixels).abs().max() <= spec.eps + 1e-6


def test_aloe_and_atom_train_score_and_are_attacked_on_the_smoke_preset(tiny_catalog, tmp_path, capsys):
    args = ("--methods", "msp,aloe,atom", "--aux", "tiny-aux", "--attack", "atom", "--cache-dir", str(tmp_path / "cache"))
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0
    out = capsys.readouterr().out
    assert "aloe: fine-tuned" in out and "atom: fine-tuned" in out
    rows = {(r["method"], bool(r["attack"])): r for r in store_rows(tmp_path / "results")}
    assert all(rows[(m, a)]["status"] == "ok" for m in ("msp", "aloe", "atom") for a in (False, True))
    assert '"from_scratch": false' in rows[("atom", False)]["params"] and '"epochs": 1' in rows[("aloe", False)]["params"]
    (meta,) = [p for p in (tmp_path / "cache" / "finetune").glob("*/meta.json") if '"atom"' in p.read_text()]
    facts = json.loads(meta.read_text())
    assert facts["outputs"] == 11 and facts["per_epoch"] == [{"pool": 60, "slice_start": 7, "mined": 53}]
    assert run_tiny(tiny_catalog, tmp_path / "results", *args) == 0  # the 11-output network comes back from the cache
    assert "images through the classifier: 0" in capsys.readouterr().out
