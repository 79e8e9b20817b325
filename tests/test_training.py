"""The classifier recipe: resumable between epochs, and equal to an uninterrupted run when resumed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oodbench.api import TrainingRecipe
from oodbench.engine.device import Compute
from oodbench.models.architectures import SmallCNN
from oodbench.models.classifier import ImageClassifier
from oodbench.models.training import cosine_with_warmup, train_classifier

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
