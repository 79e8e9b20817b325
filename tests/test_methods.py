"""Unit tests of the built-in methods on synthetic tensors: each computes the score it cites."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import fit_with, image_batches, score_with
from torch import nn

from oodbench.api import Head, Reads
from oodbench.engine.context import Network
from oodbench.errors import ConfigError
from oodbench.models.classifier import ImageClassifier
from oodbench.params import resolve_params
from oodbench.registry import build_registry


@pytest.fixture
def registry():
    """Built inside the test, after conftest cleared the shell's plugin and catalog settings."""
    return build_registry()


@pytest.fixture
def method(registry):
    def make(name, **overrides):
        cls = registry.method(name)
        return cls(resolve_params(cls, "any", "none", overrides))

    return make


def gaussian_features(n_per_class=200, classes=3, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, (classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    features = means[labels] + rng.normal(0, 1, (len(labels), dim))
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels)


def test_logit_scores_follow_their_definitions(method):
    logits = torch.randn(64, 10) * 3
    p = logits.softmax(1)
    torch.testing.assert_close(score_with(method("msp"), logits=logits), -p.max(1).values)
    torch.testing.assert_close(score_with(method("energy"), logits=logits), -torch.logsumexp(logits, 1))
    torch.testing.assert_close(score_with(method("energy", temperature="2"), logits=logits), -2 * torch.logsumexp(logits / 2, 1))
    torch.testing.assert_close(score_with(method("entropy"), logits=logits), -(p * p.log()).sum(1))
    torch.testing.assert_close(score_with(method("maxlogit"), logits=logits), -logits.max(1).values)


def test_mahalanobis_is_half_the_squared_distance_to_the_closest_class_mean(method, tmp_path):
    features, labels = gaussian_features()
    m = fit_with(method("mahalanobis"), labels, tmp_path, features=features)
    test = torch.randn(20, 8) * 3
    x, mu = features.double().numpy(), np.stack([features[labels == c].double().numpy().mean(0) for c in range(3)])
    centered = x - mu[labels.numpy()]
    precision = np.linalg.inv(centered.T @ centered / len(x))
    diff = test.double().numpy()[:, None, :] - mu[None]
    expected = 0.5 * np.einsum("ncd,de,nce->nc", diff, precision, diff).min(1)
    scores = score_with(m, features=test).double().numpy()
    np.testing.assert_allclose(scores * len(x), expected, rtol=1e-3)


def test_mahalanobis_reads_images_only_with_input_preprocessing(method):
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


def test_odin_step_raises_confidence_and_eps_zero_is_temperature_msp(method):
    model = ImageClassifier(TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    images = torch.rand(24, 3, 4, 4)
    plain = score_with(method("odin", eps="0"), images=image_batches(model, images))
    with torch.no_grad():
        expected = -(model(images) / 1000).softmax(1).max(1).values
    torch.testing.assert_close(plain, expected)
    nudged = score_with(method("odin", eps="0.01"), images=image_batches(model, images))
    assert (nudged <= plain + 1e-7).all() and (nudged < plain).float().mean() > 0.9


def test_mahalanobis_with_preprocessing_scores_from_its_plain_state(method, tmp_path):
    model = ImageClassifier(TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    train, test = torch.rand(40, 3, 4, 4), torch.rand(10, 3, 4, 4)
    with torch.no_grad():
        features = model.features(train)
    labels = torch.arange(40) % 4
    nudged = fit_with(method("mahalanobis", eps="0.001"), labels, tmp_path, features=features)
    assert set(nudged.state) == {"mu", "precision"}
    scores = score_with(nudged, features=model.features(test).detach(), images=image_batches(model, test))
    plain = fit_with(method("mahalanobis"), labels, tmp_path, features=features)
    assert scores.shape == (10,) and torch.isfinite(scores).all()
    assert (scores <= score_with(plain, features=model.features(test).detach()) + 1e-5).all()  # the step reduces the distance


def test_input_preprocessing_leaves_no_gradient_on_the_shared_network(method, tmp_path):
    network = Network("key", "test", ImageClassifier(TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval())
    model, images = network.model, torch.rand(16, 3, 4, 4)
    with torch.no_grad():
        features = model.features(images)
    mahalanobis = fit_with(method("mahalanobis", eps="0.002"), torch.arange(16) % 4, tmp_path, features=features)
    score_with(mahalanobis, features=features, images=image_batches(model, images))
    score_with(method("odin"), images=image_batches(model, images))
    assert all(parameter.grad is None for parameter in model.parameters())


def test_fitted_feature_methods_flag_weak_activations_as_outliers(method, tmp_path):
    """Post-ReLU features: ID samples activate their class direction strongly, outliers activate nothing."""
    rng = np.random.default_rng(1)
    means = np.abs(rng.normal(0, 1, (4, 16))) * (rng.random((4, 16)) < 0.4) * 6
    labels = np.repeat(np.arange(4), 150)
    features = torch.tensor(np.maximum(means[labels] + rng.normal(0, 0.5, (600, 16)), 0), dtype=torch.float32)
    head = Head(weight=torch.tensor(means / np.linalg.norm(means, axis=1, keepdims=True), dtype=torch.float32), bias=torch.zeros(4))
    inliers = features[::5]
    outliers = torch.tensor(np.abs(rng.normal(0, 0.3, (100, 16))), dtype=torch.float32)

    def given(m, x):
        """What the method declared, of features x."""
        values = {"features": x, "logits": x @ head.weight.T, "head": head}
        return {k: v for k, v in values.items() if Reads(k) in m.capabilities().reads}

    def median_score(fitted, x):
        return np.median(score_with(fitted, num_classes=4, **given(fitted, x)).numpy())

    for name in ["mahalanobis", "rmd", "vim", "dice", "klmatching", "knn"]:
        untrained = method(name)
        fitted = fit_with(untrained, torch.tensor(labels), tmp_path, **given(untrained, features))
        assert median_score(fitted, outliers) > median_score(fitted, inliers), name


def test_knn_is_the_distance_to_the_kth_nearest_normalised_training_feature(method, tmp_path):
    features, labels = gaussian_features(dim=8)
    test = torch.randn(20, 8) * 3
    fitted = fit_with(method("knn", k="7"), labels, tmp_path, features=features)
    unit = torch.nn.functional.normalize
    expected = torch.cdist(unit(test, dim=1), unit(features, dim=1)).sort(dim=1).values[:, 6]
    torch.testing.assert_close(score_with(fitted, features=test), expected, rtol=1e-5, atol=1e-5)
    assert resolve_params(type(fitted), "cifar100", "quick").k == 200


def test_dice_drops_ninety_percent_and_the_notebook_protocol_a_fraction_of_a_percent(registry, tmp_path):
    features, labels = gaussian_features(n_per_class=50, classes=10, dim=40)
    features = features.abs()
    head = Head(torch.randn(10, 40), torch.zeros(10))
    cls = registry.method("dice")
    for protocol, dropped in (("clean", 0.9), ("mim-notebook", 0.0065)):
        fitted = fit_with(cls(resolve_params(cls, "cifar10", "quick", protocol=protocol)), labels, tmp_path,
                          features=features, head=head)
        assert (fitted.state["masked_weight"] == 0).float().mean().item() == pytest.approx(dropped, abs=0.003)
    # the notebooks' DICE(p=0.65) in pytorch-ood 0.1.6: np.percentile(contrib, 0.65), the 0.65th percentile
    contrib = (features.mean(dim=0)[None, :] * head.weight).numpy()
    assert (contrib <= np.percentile(contrib, 0.65)).mean() == pytest.approx(0.0065, abs=0.003)


def test_klmatching_under_the_notebook_protocol_uses_true_labels_and_the_predicted_class(registry, tmp_path):
    logits = torch.tensor([[3.0, 0.0], [2.0, 1.0], [0.0, 3.0], [1.0, 0.5]])
    labels = torch.tensor([0, 0, 1, 1])  # the last sample is predicted 0 but labelled 1
    cls = registry.method("klmatching")
    notebook = fit_with(cls(resolve_params(cls, "cifar10", "quick", protocol="mim-notebook")), labels, tmp_path, logits=logits)
    p = logits.softmax(dim=1)
    templates = torch.stack([p[:2].mean(dim=0), p[2:].mean(dim=0)])
    test = torch.tensor([[0.5, 0.0], [0.0, 2.0]])
    q = test.softmax(dim=1)
    kl = (q[:, None, :] * (q[:, None, :].log() - templates[None].log())).sum(dim=2)
    expected = kl.gather(1, q.argmax(dim=1, keepdim=True)).squeeze(1)
    torch.testing.assert_close(score_with(notebook, num_classes=2, logits=test), expected)
    clean = fit_with(cls(resolve_params(cls, "cifar10", "quick")), labels, tmp_path, logits=logits)
    predicted = torch.stack([p[[0, 1, 3]].mean(dim=0), p[2]])
    kl = (q[:, None, :] * (q[:, None, :].log() - predicted[None].log())).sum(dim=2)
    torch.testing.assert_close(score_with(clean, num_classes=2, logits=test), kl.min(dim=1).values)


def test_odin_under_the_notebook_protocol_steps_in_normalised_units_on_the_logit(method):
    model = ImageClassifier(TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    images = torch.rand(24, 3, 4, 4)
    normalised = score_with(method("odin", eps="0.004", eps_units="normalised", loss="logit"), images=image_batches(model, images))
    pixels = score_with(method("odin", eps="0.001", loss="logit"), images=image_batches(model, images))  # 0.004 x std 0.25
    torch.testing.assert_close(normalised, pixels)
    x = images.clone().requires_grad_(True)
    top = (model(x) / 1000).max(dim=1)
    (gradient,) = torch.autograd.grad(-top.values.sum(), x)  # nll_loss on the tempered logits: minus the top logit
    with torch.no_grad():
        by_hand = -(model(images - 0.001 * gradient.sign()) / 1000).softmax(dim=1).max(dim=1).values
    torch.testing.assert_close(pixels, by_hand)


def test_entropy_and_energy_read_features_only_under_the_notebook_protocol_on_cifar100(registry):
    for name in ("entropy", "energy"):
        cls = registry.method(name)
        notebook = cls(resolve_params(cls, "cifar100", "quick", protocol="mim-notebook"))
        assert notebook.params.on == "features" and notebook.capabilities().reads == {Reads.FEATURES}
        for dataset, protocol in (("cifar10", "mim-notebook"), ("cifar100", "clean")):
            assert cls(resolve_params(cls, dataset, "quick", protocol=protocol)).capabilities().reads == {Reads.LOGITS}


def test_vim_subspace_defaults_to_half_the_feature_dimension(method, tmp_path):
    features, labels = gaussian_features(dim=16)
    m = fit_with(method("vim"), labels, tmp_path, features=features, head=Head(torch.randn(3, 16), torch.zeros(3)))
    assert m.state["d"] == 8 and m.state["principal_subspace"].shape == (16, 8)


def test_parameters_come_from_defaults_dataset_defaults_and_typed_overrides(registry):
    cls = registry.method("odin")
    assert resolve_params(cls, "cifar10", "quick").temperature == 1000.0
    assert resolve_params(cls, "cifar10", "quick", {"eps": "0.002"}).eps == 0.002
    with pytest.raises(ConfigError, match="(?s)no parameter 'epsilon'.*eps, eps_units, loss, temperature"):
        resolve_params(cls, "cifar10", "quick", {"epsilon": "1"})
    with pytest.raises(ConfigError, match="not a valid float"):
        resolve_params(cls, "cifar10", "quick", {"eps": "large"})


def test_vim_with_a_subspace_as_large_as_the_features_scores_the_negative_energy(registry, tmp_path):
    cls = registry.method("vim")
    features, labels = gaussian_features(dim=16)
    head = Head(torch.randn(3, 16), torch.randn(3))
    m = fit_with(cls(resolve_params(cls, "cifar10", "", {"d": 1000})), labels, tmp_path, features=features, head=head)
    assert m.state["principal_subspace"].shape == (16, 0)
    expected = -torch.logsumexp(features.float() @ head.weight.T + head.bias, dim=1)
    torch.testing.assert_close(score_with(m, 3, features=features, head=head), expected)


def test_openood_protocol_settings_and_sweeps(registry):
    """OpenOOD v1.5's postprocessor configs: the defaults, and the grids its automatic search tries."""
    from oodbench.config import resolve_config
    from oodbench.engine.entries import method_entries

    def params(name: str, dataset: str = "cifar100"):
        return resolve_params(registry.method(name), dataset, "", protocol="openood-v1.5")

    assert params("knn").k == 50 and resolve_params(registry.method("knn"), "cifar100", "").k == 200  # the KNN paper: 200
    assert params("vim").d == 256 and (params("odin").temperature, params("odin").eps) == (1000.0, 0.0014)
    assert params("dice").p == 0.9 and params("mahalanobis").eps == 0.0
    config = resolve_config(registry, preset="smoke", id_dataset="cifar10", protocol="openood-v1.5", tune=True,
                            methods=["odin", "knn", "vim", "dice", "mahalanobis", "klmatching", "msp"], say=lambda _: None)
    assert config.id_dataset == "openood-cifar10"  # the benchmark's own lists
    entries = {e.label: e for e in method_entries(config, registry, registry.dataset(config.id_dataset))}
    assert entries["odin"].grid()[:3] == [{"temperature": 1.0, "eps": 0.0014}, {"temperature": 1.0, "eps": 0.0028},
                                          {"temperature": 10.0, "eps": 0.0014}] and len(entries["odin"].grid()) == 8
    assert [g["k"] for g in entries["knn"].grid()] == [50, 100, 200, 500, 1000]
    assert [g["d"] for g in entries["vim"].grid()] == [256, 1000]
    assert not entries["dice"].search_space and not entries["mahalanobis"].search_space and not entries["msp"].search_space
    assert entries["klmatching"].fit_split == "val" and entries["knn"].fit_split == "train"


def test_klmatching_scores_pytorch_oods_divergence_in_float64_and_stay_finite(registry):
    """pytorch-ood's formula (its zero-entry convention included), summed in float64: finite where templates hold
    zeros, and the batch's shape moves it by float64 rounding only."""
    from pytorch_ood.detector import KLMatching as Reference

    cls = registry.method("klmatching")
    torch.manual_seed(0)
    for scale, classes in ((1.0, 10), (30.0, 10), (30.0, 1000)):
        logits = torch.randn(60, classes) * scale
        reference = Reference(model=None).fit_logits(logits[:20], logits[:20].argmax(dim=1))
        method = cls(cls.Params(), state={"templates": {k: v.detach() for k, v in reference.dists.items()}})
        ours = score_with(method, classes, logits=logits)
        assert torch.isfinite(ours).all()
        if classes == 10:  # on a 1000-way confident softmax pytorch-ood's float32 sum itself overflows
            torch.testing.assert_close(ours, reference.predict_logits(logits), rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(score_with(method, classes, logits=logits[:7]), ours[:7], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["mahalanobis", "rmd"])
def test_class_gaussians_fit_a_split_that_holds_a_few_classes_of_a_large_label_space(method, name, tmp_path):
    """A set of ImageNet-1K's label space holds some of its 1,000 classes: the Gaussians are those of the classes
    it has, and the scores those of the same split labelled 0..K'-1."""
    features, labels = gaussian_features()
    sparse = torch.tensor([3, 417, 998])[labels]
    fitted = fit_with(method(name), sparse, tmp_path / "sparse", num_classes=1000, features=features)
    dense = fit_with(method(name), labels, tmp_path / "dense", features=features)
    torch.testing.assert_close(score_with(fitted, 1000, features=features), score_with(dense, 3, features=features))


def test_she_gives_a_class_without_a_correctly_classified_training_sample_confidence_zero(method, tmp_path):
    head = Head(torch.eye(3), torch.zeros(3))
    features = torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0]])
    fitted = fit_with(method("she"), torch.tensor([0, 1, 0]), tmp_path, num_classes=3, features=features, head=head)
    torch.testing.assert_close(fitted.state["patterns"], torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 0]]))
    test = torch.tensor([[1.0, 0, 0], [0, 0, 5.0]])
    torch.testing.assert_close(score_with(fitted, 3, features=test, head=head), torch.tensor([-2.0, 0.0]))


def test_residual_is_the_norm_outside_the_principal_subspace_around_the_heads_origin(method, tmp_path):
    """Features spread in the x-y plane around the origin u = -W^+ b = (1, 1, 1): with d = 2 the residual space is
    the z axis, so a sample's score is its distance from the plane z = 1."""
    generator = torch.Generator().manual_seed(0)
    spread = torch.randn(300, 2, generator=generator) * torch.tensor([3.0, 2.0])
    features = torch.cat([spread, torch.zeros(300, 1)], dim=1) + 1
    weight = torch.eye(3)
    head = Head(weight, -weight @ torch.ones(3))
    fitted = fit_with(method("residual", d="2"), torch.arange(300) % 3, tmp_path, num_classes=3, features=features, head=head)
    test = torch.tensor([[1.0, 1.0, 1.0], [5.0, -2.0, 1.0], [0.0, 0.0, 4.0], [2.0, 3.0, -1.5]])
    torch.testing.assert_close(score_with(fitted, 3, features=test, head=head), torch.tensor([0.0, 0.0, 3.0, 2.5]),
                               rtol=1e-4, atol=1e-4)
    assert method("residual").capabilities() == method("vim").capabilities()


def test_vra_is_the_papers_piecewise_function_with_per_dimension_quantile_thresholds(method, registry, tmp_path):
    """Two feature dimensions, ID values 0..10 and 0..100: the 0.6 / 0.9 quantiles are (6, 9) and (60, 90). An
    activation below alpha becomes 0, one between gains gamma, one above beta becomes beta; with the identity head
    the score is minus the log-sum-exp of the rectified features."""
    train = torch.stack([torch.arange(11.0), torch.arange(0.0, 101.0, 10.0)], dim=1)
    head = Head(torch.eye(2), torch.zeros(2))
    test = torch.tensor([[5.0, 70.0], [7.0, 95.0], [12.0, 55.0]])
    for gamma, rectified in ((0.0, [[0.0, 70.0], [7.0, 90.0], [9.0, 0.0]]), (0.5, [[0.0, 70.5], [7.5, 90.0], [9.0, 0.0]])):
        fitted = fit_with(method("vra", gamma=str(gamma)), torch.zeros(11, dtype=torch.long), tmp_path, num_classes=2,
                          features=train, head=head)
        torch.testing.assert_close(fitted.state["alpha"], torch.tensor([6.0, 60.0]))
        torch.testing.assert_close(fitted.state["beta"], torch.tensor([9.0, 90.0]))
        torch.testing.assert_close(score_with(fitted, 2, features=test, head=head),
                                   -torch.logsumexp(torch.tensor(rectified), dim=1))
    openood = registry.method("vra")(resolve_params(registry.method("vra"), "cifar10", "", protocol="openood-v1.5"))
    fitted = fit_with(openood, torch.zeros(11, dtype=torch.long), tmp_path, num_classes=2, features=train, head=head)
    low, high = np.percentile(train.numpy(), [10, 90])  # one pair over every activation, low ones raised to it
    torch.testing.assert_close(fitted.rectify(test), test.clamp(float(low), float(high)))
    assert resolve_params(registry.method("vra"), "cifar100", "").upper == 0.95


def test_openmax_scores_each_sample_alike_whatever_else_its_batch_predicts(method, tmp_path):
    """A sample's top classes are revised by their own distances, also for classes no other sample of its batch
    predicts (pytorch-ood's predict measures only those and takes 0 for the rest)."""
    logits, labels = gaussian_features(n_per_class=60, classes=4, dim=4)
    fitted = fit_with(method("openmax", alpha="3"), labels, tmp_path, num_classes=4, logits=logits)
    test = logits[::7] + torch.randn(len(logits[::7]), 4, generator=torch.Generator().manual_seed(1))
    whole = score_with(fitted, 4, logits=test)
    one_by_one = torch.cat([score_with(fitted, 4, logits=row[None]) for row in test])
    torch.testing.assert_close(one_by_one, whole)
    assert whole.std() > 0


def test_neco_is_the_share_of_the_standardised_norm_inside_the_principal_subspace(method, tmp_path):
    """Training features (t, t, s) with t, s = +-1 uncorrelated, unit variance and zero mean: standardising changes
    nothing, and the first principal component is (1, 1, 0) / sqrt(2). With d = 1 a sample's confidence is the norm of
    its projection on it over its norm."""
    t, s = torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(50), torch.tensor([1.0, -1.0, 1.0, -1.0]).repeat(50)
    train = torch.stack([t, t, s], dim=1)
    fitted = fit_with(method("neco", d="1"), torch.arange(200) % 3, tmp_path, num_classes=3, features=train, logits=train)
    test = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 2.0]])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
    expected = -torch.tensor([1.0, 0.0, 3 ** -0.5])
    torch.testing.assert_close(score_with(fitted, 3, features=test, logits=logits), expected, atol=1e-5, rtol=1e-5)
    times = type(fitted)(resolve_params(type(fitted), "any", "none", {"d": "1", "times_maxlogit": "true"}), fitted.state)
    torch.testing.assert_close(score_with(times, 3, features=test, logits=logits), expected * torch.tensor([2.0, 3.0, 4.0]),
                               atol=1e-5, rtol=1e-5)
    default = fit_with(method("neco"), torch.arange(200) % 3, tmp_path, num_classes=3, features=train, logits=train)
    assert default.state["components"].shape == (2, 3)  # K - 1 components by default


def test_multi_layer_mahalanobis_on_one_layer_is_mahalanobis_with_its_preprocessing(method, tmp_path):
    """On a network exposing one layer (its features), the ensemble is plain Mahalanobis, with and without the
    preprocessing step, which it takes through the layer's output; two layers add their distances."""
    model = ImageClassifier(TinyNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), layers={"hidden": "body.1", "act": "body"}).eval()
    train, test = torch.rand(60, 3, 4, 4), torch.rand(12, 3, 4, 4)
    labels = torch.arange(60) % 4
    with torch.no_grad():
        layers = model.forward_with_layers(train, ["hidden", "act"])[1]
        test_layers = model.forward_with_layers(test, ["hidden", "act"])[1]
    torch.testing.assert_close(layers["act"], model.features(train))
    for eps in ("0", "0.002"):
        single = fit_with(method("mdsens", eps=eps), labels, tmp_path, layers={"act": layers["act"]})
        plain = fit_with(method("mahalanobis", eps=eps), labels, tmp_path, features=layers["act"])
        expected = score_with(plain, features=test_layers["act"], images=image_batches(model, test))
        ours = score_with(single, layers={"act": test_layers["act"]}, images=image_batches(model, test))
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    both = fit_with(method("mdsens", eps="0"), labels, tmp_path, layers=layers)
    parts = [score_with(fit_with(method("mdsens", eps="0"), labels, tmp_path, layers={name: layers[name]}), layers={name: test_layers[name]})
             for name in ("hidden", "act")]
    torch.testing.assert_close(score_with(both, layers=test_layers), parts[0] + parts[1])
    assert method("mdsens").capabilities().reads == {Reads.IMAGES, Reads.LAYERS}


def test_nac_intervals_and_a_class_balanced_fit_subset(method):
    from oodbench.methods.nac import _balanced, authors_edges

    states = torch.tensor([[0.0, 0.019, 0.02, 0.5, 0.999, 1.0]])
    assert method("nac", spacing="uniform")._interval(states, 50).tolist() == [[0, 0, 1, 25, 49, 49]]
    # the authors' 50 edges: log_1000 of 25 points on [1, sqrt(1000)], mirrored about 0.5, 1.01 and 1.2 last
    edges = authors_edges(50)
    step = (1000 ** 0.5 - 1) / 24
    assert len(edges) == 50 and edges[0] == 0 and edges[24] == pytest.approx(0.5)
    assert edges[1].item() == pytest.approx(np.log(1 + step) / np.log(1000), abs=1e-6)
    assert edges[48].item() == pytest.approx(1.01) and edges[49].item() == pytest.approx(1.2)
    assert method("nac")._interval(states, 50).tolist() == [[0, 0, 0, 24, 47, 47]]
    with pytest.raises(ConfigError, match="name:O:M:alpha"):
        method("nac", layers="features:50:50").capabilities()
    assert set(method("nac", layers="features:50:50:100;block2:5:50:0.001").capabilities().layers) == {"last_map", "block2"}
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    chosen = _balanced(labels, 30, seed=0)
    assert torch.bincount(labels[chosen]).tolist() == [10, 10, 10] and chosen.tolist() == sorted(set(chosen.tolist()))
    assert _balanced(labels, 0, seed=0).tolist() == list(range(100))
