"""Zero-shot detection with CLIP (oodbench[clip]): a small open_clip architecture with random weights, its final
layer made from the ID set's class names, runs MCM beside classifier-based methods end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import make_tiny_catalog, run_tiny, store_rows

from oodbench.models.checkpoints import build_classifier, with_class_head
from oodbench.registry import build_registry

open_clip = pytest.importorskip("open_clip")

CLASSES = [f"class{i}" for i in range(10)]
BACKBONE = "clip:ViT-S-32"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Random weights of open_clip's ViT-S-32 architecture (config only, nothing downloaded), saved as a file."""
    torch.manual_seed(0)
    model = build_classifier(build_registry().backbone(BACKBONE), len(CLASSES))
    path = tmp_path_factory.mktemp("clip") / "vit-s-32-random.pt"
    torch.save({key: value for key, value in model.net.state_dict().items() if not key.startswith("fc.")}, path)
    return path


def test_the_final_layer_is_clips_zero_shot_classifier_of_the_class_names(checkpoint):
    backbone = build_registry().backbone(BACKBONE)
    model = build_classifier(backbone, len(CLASSES))
    model.net.load_state_dict(torch.load(checkpoint), strict=False)
    model = with_class_head(backbone, model, CLASSES).eval()
    clip, tokenizer = model.net.clip, open_clip.get_tokenizer("ViT-S-32")
    pixels = torch.rand(3, 3, 224, 224)
    with torch.no_grad():
        image = F.normalize(clip.encode_image(model.normalize(pixels)), dim=-1)
        text = F.normalize(clip.encode_text(tokenizer([f"a photo of a {name}." for name in CLASSES])), dim=-1)
        torch.testing.assert_close(model(pixels), clip.logit_scale.exp() * image @ text.T, rtol=1e-4, atol=1e-4)


def test_mcm_runs_end_to_end_beside_classifier_methods_on_a_random_clip(checkpoint, tmp_path, capsys):
    catalog = make_tiny_catalog(tmp_path / "data")
    names = ", ".join(f'"{name}"' for name in CLASSES)
    catalog.write_text(catalog.read_text().replace("num_classes = 10\n", f"num_classes = 10\nclasses = [{names}]\n", 1))
    extra = ["--backbone", BACKBONE, "--checkpoint", str(checkpoint), "--methods", "mcm,msp,energy,knn", "--limit", "24",
             "--cache-dir", str(tmp_path / "cache")]
    assert run_tiny(catalog, tmp_path / "results", *extra) == 0
    rows = {row["method"]: dict(row) for row in store_rows(tmp_path / "results")}
    assert set(rows) == {"mcm", "msp", "energy", "knn"} and {row["status"] for row in rows.values()} == {"ok"}
    assert all(0 <= row["auroc"] <= 1 for row in rows.values())
    assert rows["mcm"]["backbone"] == BACKBONE
