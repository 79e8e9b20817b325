"""The classifier recipe: resumable between epochs, and equal to an uninterrupted run when resumed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oodbench.api import TrainingRecipe
from oodbench.backbones.small_cnn import SmallCNN
from oodbench.data.augment import random_crop_flip
from oodbench.engine import device
from oodbench.engine.device import CompiledModule, Compute
from oodbench.models.classifier import ImageClassifier
from oodbench.models.training import COMPILE_MIN_STEPS, cosine_with_warmup, train_classifier, uses_compile

FP32 = Compute(torch.device("cpu"), "fp32", channels_last=False)
RECIPE = TrainingRecipe(epochs=2, lr=0.05, batch_size=16)


def _model() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(SmallCNN(3, 3, widths=(4, 8)), (0.5,) * 3, (0.25,) * 3)


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, 64)


def test_interrupted_training_resumes_from_the_last_epoch_and_matches(tmp_path):
    images, labels = _data()
    reference = _model()
    train_classifier(reference, images, labels, RECIPE, 0, FP32, tmp_path / "a", "ref")

    seen = []

    def interrupt_in_second_epoch(count: int) -> None:
        seen.append(count)
        if len(seen) == 6:  # 4 batches per epoch: this is the second batch of epoch 2
            raise KeyboardInterrupt

    scratch = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        train_classifier(_model(), images, labels, RECIPE, 0, FP32, scratch, "run", on_images=interrupt_in_second_epoch)
    resumed = _model()
    info = train_classifier(resumed, images, labels, RECIPE, 0, FP32, scratch, "run")
    assert info["resumed_from_epoch"] == 1
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_cosine_schedule_with_warmup():
    factor = cosine_with_warmup(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)


def test_only_long_trainings_on_a_compiling_device_are_compiled():
    compiling = Compute(torch.device("cpu"), "bf16", channels_last=True, compile=True)
    long_recipe = TrainingRecipe(epochs=COMPILE_MIN_STEPS, batch_size=16)
    assert uses_compile(compiling, 16, long_recipe)
    assert not uses_compile(compiling, 16, TrainingRecipe(epochs=COMPILE_MIN_STEPS - 1, batch_size=16))
    assert not uses_compile(FP32, 16, long_recipe)


def test_a_failed_compilation_falls_back_to_the_eager_module(monkeypatch, capsys):
    def broken_compile(module, **options):
        def call(*args):
            raise RuntimeError("no C compiler")
        return call

    monkeypatch.setattr(device.torch, "compile", broken_compile)
    model = _model().eval()
    pixels = torch.rand(2, 3, 8, 8)
    forward = CompiledModule(model, enabled=True)
    torch.testing.assert_close(forward(pixels), model(pixels))
    torch.testing.assert_close(forward(pixels), model(pixels))
    assert capsys.readouterr().err.count("torch.compile failed (RuntimeError: no C compiler)") == 1


def _per_sample_crop_flip(pixels, padding, flip, generator):
    """The reference: torchvision's RandomCrop(padding) + RandomHorizontalFlip, one sample at a time."""
    b, _, h, w = pixels.shape
    padded = torch.nn.functional.pad(pixels, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).tolist()
    out = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(zip(*offsets, strict=True))])
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        out = torch.stack([o.flip(2) if m else o for o, m in zip(out, mask, strict=True)])
    return out


@pytest.mark.parametrize("channels_last", [False, True])
def test_vectorised_crop_and_flip_equals_the_per_sample_reference(channels_last):
    pixels = torch.rand(37, 3, 8, 10)
    if channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    fast = random_crop_flip(pixels, 3, True, torch.Generator().manual_seed(5))
    reference = _per_sample_crop_flip(pixels, 3, True, torch.Generator().manual_seed(5))
    assert torch.equal(fast, reference)
    assert fast.is_contiguous(memory_format=torch.channels_last) == channels_last
    shifted = (fast != pixels).flatten(1).any(1).float().mean()
    assert shifted > 0.5  # crops and flips happened
