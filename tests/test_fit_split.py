"""Methods that fit on another ID split than the training one (``Method.fit_split``): temperature scaling
calibrates on held-out ``val`` data, and an ID set without that split does not run it."""

from __future__ import annotations

import json

import torch
from helpers import fit_with, make_tiny_catalog, run_tiny, store_rows

from oodbench.cli import main
from oodbench.registry import build_registry


def test_temperature_scaling_calibrates_on_the_val_split_and_records_it(tmp_path, capsys):
    catalog = make_tiny_catalog(tmp_path / "data", val=True)
    assert run_tiny(catalog, tmp_path / "results", "--methods", "msp,tempscale", "--cache-dir", str(tmp_path / "cache")) == 0
    rows = {row["method"]: dict(row) for row in store_rows(tmp_path / "results")}
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert json.loads(rows["tempscale"]["protocol"])["fit_split"].startswith("tiny/val")
    # a maximum-softmax ranking: one temperature changes the probabilities, not which image is more confident
    # unless the logits' gaps differ, so the AUROC stays close to MSP's
    assert abs(rows["tempscale"]["auroc"] - rows["msp"]["auroc"]) < 0.1


def test_an_id_set_without_the_split_refuses_the_method_when_named_and_leaves_it_out_by_default(tmp_path, capsys):
    catalog = make_tiny_catalog(tmp_path / "data")
    plan = ["plan", "--preset", "smoke", "--id", "tiny", "--catalog", str(catalog)]
    assert main([*plan, "--methods", "tempscale"]) == 2
    assert "fits on the ID 'val' split and tiny has none" in capsys.readouterr().err
    assert main(plan) == 0
    out = capsys.readouterr().out
    assert "note: tempscale left out: it fits on an ID split that tiny does not have (val)" in out
    assert "tempscale" not in out.split("note: tempscale")[1].split("\n", 1)[1]


def test_the_fitted_temperature_minimises_the_held_out_negative_log_likelihood(tmp_path):
    """Logits ``z = n + 2 onehot(y)`` with standard normal noise ``n`` have the posterior ``softmax(2 z)`` (each class's
    likelihood is ``exp(2 z_y)`` times what all classes share), so ``4 z`` is calibrated by ``T = 2``: the exact fit
    finds it, and the references' 50 small steps from 1 stop short (at about 1.2)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (20000,), generator=generator)
    logits = 4 * (torch.randn(20000, 5, generator=generator) + 2.0 * torch.nn.functional.one_hot(labels, 5))
    cls = build_registry().method("tempscale")
    exact = fit_with(cls(), labels, tmp_path, num_classes=5, logits=logits).state["temperature"]
    assert abs(exact - 2.0) < 0.05
    nll = lambda t: torch.nn.functional.cross_entropy(logits / t, labels).item()  # noqa: E731
    assert nll(exact) <= min(nll(exact * 0.99), nll(exact * 1.01))
    approximate = fit_with(cls(cls.Params(exact=False)), labels, tmp_path, num_classes=5, logits=logits).state["temperature"]
    assert 1.0 < approximate < 1.5
