"""Post-hoc detectors against pytorch-ood run on the network itself.

Each detector scores the same small network and images two ways: through oodbench's contract (the
network's extracted features, logits and head, fitted and scored by the method plugin) and through
pytorch-ood's detector given the network's parts and a data loader, as its documentation shows. The scores
must agree up to float error (Pearson r >= 0.9999, in float32) and rank ID against OOD alike (AUROC equal
to 4 decimals).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import fit_with, image_batches, score_with
from pytorch_ood import detector as pood
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from oodbench.models.classifier import ImageClassifier
from oodbench.params import resolve_params
from oodbench.registry import build_registry

CLASSES = 5


class SmallNet(nn.Module):
    """A ReLU network, so the activation-shaping detectors see the non-negative features they were made for."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU())
        self.fc = nn.Linear(48, CLASSES)

    def features(self, x):
        return self.body(x)


@pytest.fixture(scope="module")
def setting():
    """The network, ID training images labelled with its predictions but for a quarter of them (every class
    present), ID test images and OOD images of other statistics."""
    model = ImageClassifier(SmallNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    generator = torch.Generator().manual_seed(1)
    train = torch.rand(600, 3, 6, 6, generator=generator)
    with torch.no_grad():
        model.net.fc.weight.mul_(8)
        model.net.fc.bias.sub_(model(train).mean(0))  # centred logits: every class is predicted
        predicted = model(train).argmax(1)
    assert len(predicted.unique()) == CLASSES
    wrong = torch.arange(len(train)) % 4 == 0  # a quarter misclassified, for the detectors that fit on correct ones
    labels = torch.where(wrong, (predicted + 1) % CLASSES, predicted)
    test = torch.rand(200, 3, 6, 6, generator=generator)
    ood = (torch.rand(200, 3, 6, 6, generator=generator) * 0.4 + 0.5).clamp(0, 1)
    return model, train, labels, torch.cat([test, ood]), np.r_[np.zeros(200), np.ones(200)]


def _maps(model):
    return lambda x: model.features(x)[:, :, None, None]


def _head(model):
    return lambda maps: model.logits(maps.flatten(1))


#: (oodbench method, its parameters other than the defaults, pytorch-ood's detector on the network's parts as
#: its documentation shows)
CASES = [
    ("gen", {}, lambda m: pood.GEN(m, gamma=0.1, M=CLASSES)),
    ("react", {}, lambda m: pood.ReAct(backbone=_maps(m), head=_head(m), percentile=0.9)),
    ("scale", {}, lambda m: pood.SCALE(backbone=_maps(m), head=_head(m), percentile=0.85)),
    ("ash", {}, lambda m: pood.ASH(backbone=_maps(m), head=_head(m), variant="ash-s", percentile=0.9)),
    ("ash", {"variant": "b", "percentile": "0.65"}, lambda m: pood.ASH(backbone=_maps(m), head=_head(m), variant="ash-b", percentile=0.65)),
    ("ash", {"variant": "p", "percentile": "0.8"}, lambda m: pood.ASH(backbone=_maps(m), head=_head(m), variant="ash-p", percentile=0.8)),
    ("fdbd", {}, lambda m: pood.fDBD(encoder=m.features, head=m.net.fc)),
    ("nci", {}, lambda m: pood.NCI(encoder=m.features, head=m.net.fc, alpha=1e-4)),
    ("nnguide", {}, lambda m: pood.NNGuide(encoder=m.features, head=m.net.fc, k=100)),
    ("she", {}, lambda m: pood.SHE(encoder=m.features, head=m.net.fc)),
    ("gradnorm", {}, lambda m: pood.GradNorm(m, param_filter=lambda name: name == "net.fc.weight")),
    ("dice", {}, lambda m: pood.DICE(encoder=m.features, w=m.net.fc.weight, b=m.net.fc.bias, p=0.9)),
    ("openmax", {}, lambda m: pood.OpenMax(m, tailsize=20, alpha=10, euclid_weight=1 / 201)),
    ("tempscale", {"exact": "false"}, lambda m: pood.TemperatureScaling(m)),
    ("vra", {"below": "clip", "lower": "0.05", "upper": "0.95"},
     lambda m: pood.VRA(backbone=_maps(m), head=_head(m), lower_percentile=0.05, upper_percentile=0.95)),
]


def _ours(name: str, settings: dict, model, train, labels, x, tmp_path) -> torch.Tensor:
    cls = build_registry().method(name)
    method = cls(resolve_params(cls, "any", "none", settings))
    with torch.no_grad():
        values = {"features": model.features(x), "logits": model(x), "head": model.head()}
        fitting = {"features": model.features(train), "logits": model(train), "head": model.head()}
    reads = {r.value for r in method.capabilities().reads}
    if method.capabilities().fits:
        method = fit_with(method, labels, tmp_path, num_classes=CLASSES, **{k: v for k, v in fitting.items() if k in reads})
    return score_with(method, CLASSES, **{k: v for k, v in values.items() if k in reads})


@pytest.mark.parametrize(("name", "settings", "make_reference"), CASES,
                         ids=[name + "".join(f"-{v}" for v in settings.values()) for name, settings, _ in CASES])
def test_scores_match_pytorch_ood_on_the_same_network(name, settings, make_reference, setting, tmp_path):
    model, train, labels, x, is_ood = setting
    reference = make_reference(model)
    if build_registry().method(name).fits:
        reference.fit(DataLoader(TensorDataset(train, labels), batch_size=100))
    expected = reference.predict(x).detach().float()
    ours = _ours(name, settings, model, train, labels, x, tmp_path).float()
    assert ours.shape == expected.shape and torch.isfinite(ours).all()
    r = np.corrcoef(ours.numpy(), expected.numpy())[0, 1]
    assert r >= 0.9999, f"{name}: Pearson r {r:.6f} against pytorch-ood"
    assert round(roc_auc_score(is_ood, ours.numpy()), 4) == round(roc_auc_score(is_ood, expected.numpy()), 4)


class ConvNet(nn.Module):
    """Two convolution stages (the layers a Gram detector reads) and a linear head on their pooled output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stages = nn.ModuleList([nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
                                     nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, CLASSES))

    def maps(self, x):
        first = self.stages[0](x)
        return first, self.stages[1](first)


def test_gram_matches_pytorch_ood_on_the_same_network(tmp_path):
    """Gram statistics of the stages, fitted with the same held-out draw (the run's seed seeds pytorch-ood's global
    generator), give pytorch-ood's deviations."""
    from oodbench.models.layers import gram_row_sums

    net = ConvNet().eval()
    generator = torch.Generator().manual_seed(2)
    train = torch.rand(300, 3, 8, 8, generator=generator)
    x = torch.cat([torch.rand(60, 3, 8, 8, generator=generator), torch.rand(60, 3, 8, 8, generator=generator) ** 3])
    with torch.no_grad():
        labels = torch.randint(0, CLASSES, (300,), generator=generator)  # the bounds' classes; scoring uses predictions

        def values(images):
            first, second = net.maps(images)
            return {"logits": net.head(second), "layers": {"first": gram_row_sums(first), "second": gram_row_sums(second)}}

        fitting, scoring = values(train), values(x)
    cls = build_registry().method("gram")
    fitted = fit_with(cls(), labels, tmp_path, num_classes=CLASSES, seed=7, **fitting)
    ours = score_with(fitted, CLASSES, **scoring)

    torch.manual_seed(7)  # batches as a list: a DataLoader's iterator would draw from the global generator first
    reference = pood.Gram(head=net.head, feature_layers=list(net.stages), num_classes=CLASSES, num_poles_list=range(1, 11))
    reference.fit([(train[start:start + 100], labels[start:start + 100]) for start in range(0, 300, 100)])
    expected = reference.predict(x).detach()
    r = np.corrcoef(ours.numpy(), expected.numpy())[0, 1]
    assert r >= 0.9999, f"gram: Pearson r {r:.6f} against pytorch-ood"
    is_ood = np.r_[np.zeros(60), np.ones(60)]
    assert round(roc_auc_score(is_ood, ours.numpy()), 4) == round(roc_auc_score(is_ood, expected.numpy()), 4)


def test_multi_layer_mahalanobis_matches_pytorch_ood_on_the_same_network(tmp_path):
    """Without preprocessing: the stages' channel means give pytorch-ood's MultiMahalanobis on the stages."""
    from oodbench.models.layers import channel_means

    net = ConvNet().eval()
    generator = torch.Generator().manual_seed(3)
    train = torch.rand(300, 3, 8, 8, generator=generator)
    x = torch.cat([torch.rand(60, 3, 8, 8, generator=generator), torch.rand(60, 3, 8, 8, generator=generator) ** 3])
    labels = torch.arange(300) % CLASSES
    with torch.no_grad():
        fitting, scoring = ({"layers": dict(zip(("first", "second"), map(channel_means, net.maps(images)), strict=True))}
                            for images in (train, x))
    cls = build_registry().method("mdsens")
    fitted = fit_with(cls(resolve_params(cls, "any", "none", {"eps": "0"})), labels, tmp_path, num_classes=CLASSES, **fitting)
    ours = score_with(fitted, CLASSES, **scoring)
    reference = pood.MultiMahalanobis(list(net.stages))
    reference.fit(DataLoader(TensorDataset(train, labels), batch_size=100))
    expected = reference.predict(x).detach()
    r = np.corrcoef(ours.numpy(), expected.numpy())[0, 1]
    assert r >= 0.9999, f"mdsens: Pearson r {r:.6f} against pytorch-ood"
    is_ood = np.r_[np.zeros(60), np.ones(60)]
    assert round(roc_auc_score(is_ood, ours.numpy()), 4) == round(roc_auc_score(is_ood, expected.numpy()), 4)


def test_nac_features_state_is_the_pooled_feature_times_its_kl_gradient():
    """The authors' ``avgpool`` state, from the backbone's last map: sigmoid(alpha * f * dKL/df) with the gradient
    taken at the pooled features themselves; a stage's state sums output and gradient over positions apart."""
    model = ImageClassifier(StagedNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                            layers={"first": "stages.0", "last_map": "stages.1"}).eval()
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    cls = build_registry().method("nac")
    nac = cls(resolve_params(cls, "any", "none", {"layers": "features:50:50:100;first:5:500:0.5"}))
    states = nac._states(image_batches(model, x), x)
    net = model.net
    with torch.enable_grad():
        first = net.stages[0]((x - 0.5) / 0.25)
        features = net.stages[1](first).mean(dim=(2, 3))
        loss = -torch.log_softmax(net.fc(features), dim=1).mean(dim=1).sum()
        d_first, d_features = torch.autograd.grad(loss, [first, features])
    from oodbench.methods.nac import authors_edges

    def intervals(state, m):
        edges = authors_edges(m).tolist()
        return [[max(i for i, edge in enumerate(edges[:-1]) if edge <= v) for v in row] for row in state.tolist()]

    expected_features = torch.sigmoid(100 * features.detach() * d_features)
    expected_first = torch.sigmoid(0.5 * first.detach().sum(dim=(2, 3)) * d_first.sum(dim=(2, 3)))
    assert states["features"].tolist() == intervals(expected_features, 50)
    assert states["first"].tolist() == intervals(expected_first, 500)


class StagedNet(nn.Module):
    """:class:`ConvNet`'s stages with the ``features`` / ``fc`` split the engine's classifier wraps."""

    def __init__(self) -> None:
        super().__init__()
        convnet = ConvNet()
        self.stages, self.fc = convnet.stages, convnet.head[-1]

    def features(self, x):
        return self.stages[1](self.stages[0](x)).mean(dim=(2, 3))


def test_nac_matches_pytorch_ood_with_its_geometric_intervals(tmp_path):
    """NAC-UE's states through the engine's classifier (gradients of the KL divergence at the exposed layers), with
    pytorch-ood's intervals and channel means and every training image, give pytorch-ood's NACUE scores."""
    model = ImageClassifier(StagedNet(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), layers={"first": "stages.0", "second": "stages.1"}).eval()
    generator = torch.Generator().manual_seed(4)
    train = torch.rand(200, 3, 8, 8, generator=generator)
    x = torch.cat([torch.rand(60, 3, 8, 8, generator=generator), torch.rand(60, 3, 8, 8, generator=generator) ** 3])
    with torch.no_grad():
        names = {name: torch.zeros(len(train), width) for name, width in (("first", 8), ("second", 12))}
    cls = build_registry().method("nac")
    method = cls(resolve_params(cls, "any", "none", {"spacing": "geometric", "pooling": "mean", "fit_images": "0",
                                                     "layers": "first:50:50:100;second:50:50:100"}))
    fitted = fit_with(method, torch.arange(200) % CLASSES, tmp_path, num_classes=CLASSES, layers=names,
                      images=image_batches(model, train))
    ours = score_with(fitted, CLASSES, images=image_batches(model, x))
    reference = pood.NACUE(model, layers=[model.net.stages[0], model.net.stages[1]])
    reference.fit(DataLoader(TensorDataset(train), batch_size=50))
    expected = reference.predict(x)
    r = np.corrcoef(ours.numpy(), expected.numpy())[0, 1]
    assert r >= 0.9999, f"nac: Pearson r {r:.6f} against pytorch-ood"
    is_ood = np.r_[np.zeros(60), np.ones(60)]
    assert round(roc_auc_score(is_ood, ours.numpy()), 4) == round(roc_auc_score(is_ood, expected.numpy()), 4)
