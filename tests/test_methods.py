"""Unit tests of the built-in methods on synthetic tensors: each computes the score it cites."""

from __future__ import annotations

import contextlib
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from oodbench.api import Head, ImageBatches, Reads, Representations
from oodbench.errors import ConfigError
from oodbench.models.classifier import ImageClassifier
from oodbench.registry import build_registry

REGISTRY = build_registry()


def method(name, **overrides):
    cls = REGISTRY.method(name)
    return cls(cls.parameters_for("any", overrides))


def gaussian_features(n_per_class=200, classes=3, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, (classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    features = means[labels] + rng.normal(0, 1, (len(labels), dim))
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels)


def test_logit_scores_follow_their_definitions():
    logits = torch.randn(64, 10) * 3
    data = Representations(logits=logits)
    p = logits.softmax(1)
    torch.testing.assert_close(method("msp").score(data), -p.max(1).values)
    torch.testing.assert_close(method("energy").score(data), -torch.logsumexp(logits, 1))
    torch.testing.assert_close(method("energy", temperature="2").score(data), -2 * torch.logsumexp(logits / 2, 1))
    torch.testing.assert_close(method("entropy").score(data), -(p * p.log()).sum(1))
    torch.testing.assert_close(method("maxlogit").score(data), -logits.max(1).values)


def test_mahalanobis_is_half_the_squared_distance_to_the_closest_class_mean():
    features, labels = gaussian_features()
    m = method("mahalanobis")
    m.fit(Representations(features=features, labels=labels))
    test = torch.randn(20, 8) * 3
    x, mu = features.double().numpy(), np.stack([features[labels == c].double().numpy().mean(0) for c in range(3)])
    centered = x - mu[labels.numpy()]
    precision = np.linalg.inv(centered.T @ centered / len(x))
    diff = test.double().numpy()[:, None, :] - mu[None]
    expected = 0.5 * np.einsum("ncd,de,nce->nc", diff, precision, diff).min(1)
    scores = m.score(Representations(features=test)).double().numpy()
    np.testing.assert_allclose(scores * len(x), expected, rtol=1e-3)


def test_mahalanobis_reads_images_only_with_input_preprocessing():
    assert method("mahalanobis").capabilities().reads == {Reads.FEATURES}
    caps = method("mahalanobis", eps="0.002").capabilities()
    assert caps.reads == {Reads.FEATURES, Reads.IMAGES} and caps.fits


class TinyNet(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 16), nn.Tanh())
        self.fc = nn.Linear(16, classes)

    def features(self, x):
        return self.body(x)


def image_batches(model, images):
    return ImageBatches(model, lambda: iter(images.split(8)), len(images), precision=contextlib.nullcontext)


def test_odin_step_raises_confidence_and_eps_zero_is_temperature_msp():
    model = ImageClassifier(TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    images = torch.rand(24, 3, 4, 4)
    data = Representations(images=image_batches(model, images))
    plain = method("odin", eps="0").score(data)
    with torch.no_grad():
        expected = -(model(images) / 1000).softmax(1).max(1).values
    torch.testing.assert_close(plain, expected)
    nudged = method("odin", eps="0.01").score(data)
    assert (nudged <= plain + 1e-7).all() and (nudged < plain).float().mean() > 0.9


def test_fitted_mahalanobis_with_preprocessing_pickles_without_the_network():
    model = ImageClassifier(TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    train = torch.rand(40, 3, 4, 4)
    with torch.no_grad():
        features = model.features(train)
    m = method("mahalanobis", eps="0.001")
    m.fit(Representations(features=features, labels=torch.arange(40) % 4))
    restored = pickle.loads(pickle.dumps(m))
    scores = restored.score(Representations(images=image_batches(model, torch.rand(10, 3, 4, 4))))
    assert scores.shape == (10,) and torch.isfinite(scores).all()
    assert restored.encoder.model is None


def test_fitted_feature_methods_flag_weak_activations_as_outliers():
    """Post-ReLU features: ID samples activate their class direction strongly, outliers activate nothing."""
    rng = np.random.default_rng(1)
    means = np.abs(rng.normal(0, 1, (4, 16))) * (rng.random((4, 16)) < 0.4) * 6
    labels = np.repeat(np.arange(4), 150)
    features = torch.tensor(np.maximum(means[labels] + rng.normal(0, 0.5, (600, 16)), 0), dtype=torch.float32)
    head = Head(weight=torch.tensor(means / np.linalg.norm(means, axis=1, keepdims=True), dtype=torch.float32), bias=torch.zeros(4))
    logits = features @ head.weight.T
    train = Representations(features=features, labels=torch.tensor(labels), logits=logits, head=head)
    inliers = features[::5]
    outliers = torch.tensor(np.abs(rng.normal(0, 0.3, (100, 16))), dtype=torch.float32)

    def median_score(fitted, x):
        return np.median(fitted.score(Representations(features=x, logits=x @ head.weight.T, head=head)).numpy())

    for name in ["mahalanobis", "rmd", "vim", "dice", "klmatching"]:
        fitted = method(name)
        fitted.fit(train)
        assert median_score(fitted, outliers) > median_score(fitted, inliers), name


def test_vim_subspace_defaults_to_half_the_feature_dimension():
    features, labels = gaussian_features(dim=16)
    m = method("vim")
    m.fit(Representations(features=features, labels=labels, head=Head(torch.randn(3, 16), torch.zeros(3))))
    assert m.detector.d == 8


def test_parameters_come_from_defaults_dataset_defaults_and_typed_overrides():
    cls = REGISTRY.method("odin")
    assert cls.parameters_for("cifar10", {}).temperature == 1000.0
    assert cls.parameters_for("cifar10", {"eps": "0.002"}).eps == 0.002
    with pytest.raises(ConfigError, match="(?s)no parameter 'epsilon'.*eps, temperature"):
        cls.parameters_for("cifar10", {"epsilon": "1"})
    with pytest.raises(ConfigError, match="not a valid float"):
        cls.parameters_for("cifar10", {"eps": "large"})
