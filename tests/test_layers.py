"""Intermediate layers: what backbones expose, what methods declare, and their extraction beside the logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import make_tiny_catalog, run_tiny, score_with
from pytorch_ood import detector as pood
from sklearn.metrics import roc_auc_score

from oodbench.api import Capabilities, Reads, Reduction
from oodbench.cli import main
from oodbench.errors import ConfigError
from oodbench.models.checkpoints import build_classifier
from oodbench.models.layers import captured, resolve_layers
from oodbench.params import resolve_params
from oodbench.registry import build_registry

LAYERED = ["cnn-small", "wrn-16-2", "resnet18-32x32", "resnet18-224x224", "resnet50", "efficientnet-lite0"]


@pytest.mark.parametrize("name", LAYERED)
def test_a_backbones_last_map_is_what_its_features_pool(name):
    """Every declared layer is a submodule that returns a tensor, and ``last_map`` averaged over its positions is
    the penultimate features: the map the features are pooled from, as methods reading it assume."""
    spec = build_registry().backbone(name)
    model = build_classifier(spec, 10).eval()
    reads = tuple((layer, Reduction.MAP) for layer in spec.layers)
    pixels = torch.rand(2, spec.channels, spec.input_size, spec.input_size)
    with torch.no_grad(), captured(model.net, model.layer_paths, reads) as outputs:
        features = model.features(pixels)
    assert list(outputs) == [f"{layer}:map" for layer in spec.layers] and list(spec.layers)[-1] == "last_map"
    assert all(value.dim() == 4 and len(value) == 2 for value in outputs.values())
    torch.testing.assert_close(outputs["last_map:map"].mean(dim=(2, 3)), features, rtol=1e-4, atol=1e-5)


def test_channel_mean_is_the_spatial_mean_and_every_layer_resolves_in_forward_order():
    spec = build_registry().backbone("cnn-small")
    model = build_classifier(spec, 10).eval()
    both = (("stage1", Reduction.MAP), ("stage1", Reduction.CHANNEL_MEAN))
    with torch.no_grad(), captured(model.net, model.layer_paths, both) as outputs:
        model(torch.rand(3, 3, 32, 32))
    torch.testing.assert_close(outputs["stage1:channel_mean"], outputs["stage1:map"].mean(dim=(2, 3)))
    assert resolve_layers({"*": Reduction.CHANNEL_MEAN}, tuple(spec.layers), "m", "cnn-small") == (
        ("stage1", Reduction.CHANNEL_MEAN), ("stage2", Reduction.CHANNEL_MEAN), ("last_map", Reduction.CHANNEL_MEAN))
    with pytest.raises(ConfigError, match="does not expose"):
        resolve_layers({"block9": Reduction.MAP}, tuple(spec.layers), "m", "cnn-small")


def test_declaring_layers_adds_the_layers_read():
    caps = Capabilities(reads={Reads.HEAD}, layers={"last_map": "map"})
    assert caps.reads == {Reads.HEAD, Reads.LAYERS} and caps.layers == {"last_map": Reduction.MAP}
    assert "last_map(map)" in caps.describe()
    with pytest.raises(ValueError, match="every layer"):
        Capabilities(reads=set(), layers={"*": "map", "last_map": "map"})


#: methods that shape the last feature map, with their settings and pytorch-ood's detector on the network's parts
MAP_SHAPERS = [
    ("rankfeat", {}, lambda backbone, head: pood.RankFeat(backbone=backbone, head=head)),
    ("ash", {"on": "last_map"}, lambda backbone, head: pood.ASH(backbone=backbone, head=head, variant="ash-s", percentile=0.9)),
    ("ash", {"on": "last_map", "variant": "b", "percentile": "0.65"},
     lambda backbone, head: pood.ASH(backbone=backbone, head=head, variant="ash-b", percentile=0.65)),
]


@pytest.mark.parametrize(("name", "settings", "make_reference"), MAP_SHAPERS, ids=["rankfeat", "ash-s", "ash-b"])
def test_map_shaping_matches_pytorch_ood_on_the_networks_last_map(name, settings, make_reference):
    spec = build_registry().backbone("cnn-small")
    model = build_classifier(spec, 5).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(60, 3, 32, 32, generator=generator), torch.rand(60, 3, 32, 32, generator=generator) * 0.3])
    net = model.net
    reference = make_reference(lambda pixels: net.body(model.normalize(pixels)), lambda maps: net.fc(net.pool(maps).flatten(1)))
    with torch.no_grad(), captured(net, model.layer_paths, [("last_map", Reduction.MAP)]) as outputs:
        model(x)
        expected = reference.predict(x)
    cls = build_registry().method(name)
    method = cls(resolve_params(cls, "any", "none", settings))
    assert method.capabilities().layers == {"last_map": Reduction.MAP}
    maps = outputs["last_map:map"]
    before = maps.clone()
    ours = score_with(method, 5, head=model.head(), layers={"last_map": maps})
    assert torch.equal(maps, before)  # the handed map is left as it was (OpenOOD's ASH shapes in place; pytorch-ood's must not)
    assert np.corrcoef(ours.numpy(), expected.numpy())[0, 1] >= 0.9999
    is_ood = np.r_[np.zeros(60), np.ones(60)]
    assert round(roc_auc_score(is_ood, ours.numpy()), 4) == round(roc_auc_score(is_ood, expected.numpy()), 4)


def test_a_method_reading_a_new_layer_extracts_only_that_layer(tmp_path, capsys):
    """Added to a finished run, a method that reads a layer no other method read: the plan says the extraction
    computes only that layer; the run loads the cached logits and features and writes the layer beside them,
    for the splits it scores (not for the training split KNN fits on); run again, everything is cached. Under
    --sealed the method gets the same layer in its worker."""
    catalog = make_tiny_catalog(tmp_path / "data")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert run_tiny(catalog, tmp_path / "results", "--methods", "msp,knn", *cache) == 0
    capsys.readouterr()
    assert main(["plan", "--preset", "smoke", "--id", "tiny", "--catalog", str(catalog), "--methods", "msp,knn,rankfeat", *cache]) == 0
    plan = capsys.readouterr().out
    extract_rows = [line for line in plan.splitlines() if line.startswith("extract")]
    assert len(extract_rows) == 3 and sum("computes only last_map:map (the rest cached)" in row for row in extract_rows) == 2
    assert " cached " in next(row for row in extract_rows if "tiny/train" in row)
    assert " cached " in [line for line in plan.splitlines() if line.startswith("score") and "msp" in line][0]
    assert run_tiny(catalog, tmp_path / "results", "--methods", "msp,knn,rankfeat", *cache) == 0
    assert "extract: 3 cached, 2 computed" in capsys.readouterr().out
    layer_files = sorted((tmp_path / "cache" / "extract").glob("*/values.npy"))
    assert len(layer_files) == 2 and {np.load(f, mmap_mode="r").ndim for f in layer_files} == {4}
    assert run_tiny(catalog, tmp_path / "results", "--methods", "msp,knn,rankfeat", "--sealed", *cache) == 0
    out = capsys.readouterr().out
    assert "extract: 5 cached, 0 computed" in out and "3/3 cells ok" in out


def test_a_backbone_without_the_layer_is_refused_when_named_and_left_out_by_default(tmp_path, capsys):
    catalog = make_tiny_catalog(tmp_path / "data")
    plan = ["plan", "--preset", "smoke", "--id", "tiny", "--catalog", str(catalog), "--backbone", "cnn-digits"]
    assert main([*plan, "--methods", "rankfeat"]) == 2
    assert "does not expose" in capsys.readouterr().err
    assert main(["plan", "--preset", "demo"]) == 0  # the demo's cnn-digits exposes no layers
    out = capsys.readouterr().out
    assert "note: gram, mdsens, nac, rankfeat left out: they read intermediate layers that backbone cnn-digits does not expose" in out
    planned = out.split("note:")[-1].split("\n", 1)[1]
    assert not any(f" {name} " in planned for name in ("gram", "mdsens", "nac", "rankfeat"))


def test_a_runs_representations_reproduce_its_scores_through_pytorch_ood(tmp_path):
    """``oodbench.representations`` hands out what the run's methods read (per split: logits, features, declared
    layers, ID labels; the head), so a reference implementation run on them gives the run's own scores."""
    import oodbench

    catalog = make_tiny_catalog(tmp_path / "data")
    options = dict(methods=["energy", "rankfeat", "knn"], id="tiny", preset="smoke", catalogs=[catalog],
                   cache_dir=tmp_path / "cache", quiet=True)
    result = oodbench.run(**options, results=tmp_path / "results")
    reps = oodbench.representations(**options)
    assert set(reps.splits) == {"tiny/test", "tiny-ood/test", "tiny/train"}
    test, ood = reps["tiny/test"], reps["tiny-ood/test"]
    assert test.labels is not None and ood.labels is None and len(reps["tiny/train"].labels) == 200
    assert test.logits.shape == (50, 10) and test.features.shape == (50, 64) and test.logits.dtype == np.float32
    assert set(test.layers) == {"last_map:map"} and test.layers["last_map:map"].shape[:2] == (50, 64)
    head = reps.head
    torch.testing.assert_close(torch.from_numpy(np.array(test.features)) @ head.weight.T + head.bias,
                               torch.from_numpy(np.array(test.logits)), rtol=1e-4, atol=1e-4)
    reference = pood.RankFeat(backbone=None, head=lambda maps: maps.mean(dim=(2, 3)) @ head.weight.T + head.bias)
    id_scores, ood_scores = result.scores("rankfeat", "tiny-ood")
    for scores, split in ((id_scores, test), (ood_scores, ood)):
        expected = reference.predict_feature_maps(torch.from_numpy(np.array(split.layers["last_map:map"])))
        np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-4, atol=1e-4)


def test_one_extraction_pass_per_split_however_many_layers_and_reductions_are_read(tmp_path, capsys):
    """Methods reading every layer (two reductions), the last map and the features: still one pass per split."""
    import oodbench

    catalog = make_tiny_catalog(tmp_path / "data")
    result = oodbench.run(methods=["msp", "knn", "rankfeat", "gram", "mdsens"], params={"mdsens": {"eps": 0.0}}, id="tiny",
                          preset="smoke", catalogs=[catalog], cache_dir=tmp_path / "cache", results=tmp_path / "results", quiet=True)
    assert result.ok
    passes, _seconds = result.computed["extract"]
    assert passes == 3  # tiny/test, tiny-ood/test and tiny/train (the fitted methods' split)
    assert main(["run", "--preset", "smoke", "--id", "tiny", "--catalog", str(catalog), "--methods", "energy,gram",
                 "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "results")]) == 0
    assert "computed, per stage:" in capsys.readouterr().out
