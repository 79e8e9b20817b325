"""Unit tests of MIM, OE and BAL on small tensors: each piece does what methods.md specifies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import fit_with, score_with
from torch import nn

from oodbench.data.augment import JitterAffine
from oodbench.methods import aloe, atom, bal, mim, oe
from oodbench.models.classifier import ImageClassifier
from oodbench.models.outlier_training import cosine_annealing
from oodbench.params import resolve_params
from oodbench.registry import build_registry


@pytest.fixture
def registry():
    """Built inside the test, after conftest cleared the shell's plugin and catalog settings."""
    return build_registry()


# -- MIM ------------------------------------------------------------------------------------------

def test_mixup_averages_k_images_with_equal_weights():
    batch, k = 16, 5
    one_hot = torch.eye(batch)  # image i is the indicator of position i
    mixed = mim.multiple_input_mixup(one_hot, k, torch.Generator().manual_seed(0))
    counts = mixed * k
    assert torch.allclose(counts, counts.round()) and (counts.sum(dim=1) == k).all()
    assert ((counts.round() / k) == mixed).all()  # every weight is a multiple of 1/k


def test_mixup_uses_k_independent_permutations():
    batch, k = 8, 3
    one_hot = torch.eye(batch)
    generator = torch.Generator().manual_seed(1)
    # each permutation is used once per output position: every image appears exactly k times overall
    mixed = mim.multiple_input_mixup(one_hot, k, generator)
    assert torch.allclose((mixed * k).sum(dim=0), torch.full((batch,), float(k)))
    # repeats within one mixed image happen (independent permutations), so they are not one permutation reused
    repeats = 0
    for seed in range(50):
        counts = (mim.multiple_input_mixup(one_hot, k, torch.Generator().manual_seed(seed)) * k).round()
        repeats += int((counts > 1).any())
    assert repeats > 0
    single = mim.multiple_input_mixup(one_hot, 1, torch.Generator().manual_seed(2))
    assert sorted(single.argmax(dim=1).tolist()) == list(range(batch))


def test_mixed_images_are_augmented_with_the_given_probability():
    pixels = torch.rand(400, 3, 8, 8)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    assert torch.equal(mim.augment_mixed(pixels, 0.0, generator), pixels)
    changed = (mim.augment_mixed(pixels, 0.5, generator) != pixels).flatten(1).any(dim=1).float().mean()
    assert 0.4 < changed < 0.6
    everything = mim.augment_mixed(pixels, 1.0, generator)
    assert (everything != pixels).flatten(1).any(dim=1).all()


def test_batched_jitter_and_affine_equal_torchvision_image_by_image():
    images = torch.rand(64, 3, 32, 32)
    colour_only = JitterAffine(brightness=0.5, contrast=0.3, saturation=0.3, hue=0.3, degrees=0, translate=0)
    for augmentation in (mim.MIXED_AUGMENTATION, colour_only):
        pipeline = augmentation.reference()
        torch.manual_seed(3)
        one_by_one = torch.stack([pipeline(image) for image in images])
        after_loop = torch.rand(1)
        torch.manual_seed(3)
        given = images.clone()
        batched = augmentation(images)
        assert torch.equal(images, given)  # the input is not written to
        assert torch.equal(torch.rand(1), after_loop)  # the same draws, in the same order
        with torch.autocast("cpu", dtype=torch.bfloat16):  # a training step's autocast leaves it in float32
            torch.manual_seed(3)
            assert torch.equal(augmentation(images), batched)
        same = (batched - one_by_one).abs() <= 1e-5
        if augmentation is colour_only:
            assert same.all()
        else:  # nearest sampling: a rounding difference in the grid may move a sample across a pixel border
            assert same.float().mean() > 0.999 and not torch.equal(batched, images)


def test_augmentation_happens_in_pixel_space_and_the_model_normalises():
    pixels = torch.rand(4, 3, 8, 8)
    augmented = mim.augment_mixed(pixels, 1.0, torch.Generator().manual_seed(0))
    assert augmented.min() >= 0 and augmented.max() <= 1  # pixel range kept: no normalised values went in
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    net.features = lambda x: x.flatten(1)
    net.fc = nn.Linear(3 * 8 * 8, 4)
    model = ImageClassifier(net, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    normalised = (pixels - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / 0.2
    torch.testing.assert_close(model(pixels), net.fc(normalised.flatten(1)))
    torch.testing.assert_close(model.normalize(pixels) * model.std + model.mean, pixels)


def test_uniform_cross_entropy():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    expected = (math.log(2) + (-0.5 * (2 - math.log(math.exp(2) + 1)) - 0.5 * (0 - math.log(math.exp(2) + 1)))) / 2
    assert mim.uniform_cross_entropy(logits).item() == pytest.approx(expected, abs=1e-6)


def test_mim_defaults_follow_the_id_dataset(registry):
    cls = registry.method("mim")

    def params(dataset):
        return resolve_params(cls, dataset, "paper")

    assert (params("cifar10").k, params("cifar10").p_aug) == (10, 0.5)
    assert (params("cifar100").k, params("cifar100").p_aug) == (5, 1.0)
    assert params("svhn").k == 10
    assert cls(cls.Params()).capabilities().trains


# -- OE -------------------------------------------------------------------------------------------

def test_oe_loss_matches_a_hand_computed_example():
    logits_in, targets = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    logits_out = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    ce = math.log(1 + math.exp(-2))
    out1 = -(1.0 - (1 + math.log(2)))
    out2 = -(1.5 - math.log(math.exp(3) + 1))
    expected = ce + 0.5 * (out1 + out2) / 2
    assert oe.outlier_exposure_loss(logits_in, targets, logits_out, 0.5).item() == pytest.approx(expected, abs=1e-6)
    combined_average = (ce + 0.5 * (out1 + out2)) / 3  # pytorch-ood's form: one mean over all three samples
    assert expected != pytest.approx(combined_average, abs=1e-3)


def test_oe_cosine_schedule_goes_from_lr_to_lr_min():
    factor = cosine_annealing(100, 1e-3, 1e-6)
    assert factor(0) == pytest.approx(1.0) and factor(100) == pytest.approx(1e-3)
    assert oe.OutlierExposure(None).capabilities().aux


# -- BAL ------------------------------------------------------------------------------------------

class TableD(nn.Module):
    """A discriminator whose logit is ``sum(f) + c``: every loss term is computable by hand."""

    def forward(self, f, c):
        return f.sum(dim=1) + c.float()


def _log_sigmoid(x: float, floor: bool = False) -> float:
    value = -math.log1p(math.exp(-x))
    return max(value, math.log(1e-4)) if floor else value


def test_bal_losses_on_a_hand_checkable_batch():
    d = TableD()
    f, c = torch.tensor([[1.0, 0.0], [0.0, -1.0]]), torch.tensor([0, 1])   # logits 1 and 0
    fake, fake_c = torch.tensor([[0.5, 0.0]]), torch.tensor([1])            # logit 1.5
    assert bal.gan_loss(d, f, c, fake, fake_c).item() == pytest.approx(
        -(_log_sigmoid(1) + _log_sigmoid(0)) / 2 - _log_sigmoid(-1.5), abs=1e-6)
    wrong = torch.tensor([1, 0])                                            # logits 2 and -1
    assert bal.shuffle_loss(d, f, c, wrong).item() == pytest.approx(
        ((_log_sigmoid(2) - _log_sigmoid(1)) + (_log_sigmoid(-1) - _log_sigmoid(0))) / 2, abs=1e-6)
    ood, ood_c = torch.tensor([[-3.0, 0.0], [-20.0, 0.0]]), torch.tensor([0, 0])   # logits -3 and -20 (floored)
    assert bal.uniform_loss(d, f, c, ood, ood_c, 0.7).item() == pytest.approx(
        0.7 * (_log_sigmoid(-3) + math.log(1e-4)) / 2 - (_log_sigmoid(1) + _log_sigmoid(0)) / 2, abs=1e-6)
    nearest = torch.tensor([2.0])
    assert bal.generator_objective(d, fake, fake_c, nearest, 0.01).item() == pytest.approx(_log_sigmoid(-1.5) + 0.02, abs=1e-6)
    confident_fake = torch.tensor([[30.0, 0.0]])                             # D(fake) ~ 1: a large, unfloored loss
    assert bal.gan_loss(d, f, c, confident_fake, torch.tensor([0])).item() > 25


def test_bal_helpers():
    generator = torch.Generator().manual_seed(0)
    f = torch.randn(64, 5)
    box, labels = bal.box_samples(f, 3, generator)
    assert (box >= f.min(0).values).all() and (box <= f.max(0).values).all() and labels.max() < 3
    c = torch.randint(3, (200,), generator=generator)
    assert (bal.shuffled_labels(c, 3, generator) != c).all()
    feats, feat_labels = torch.randn(30, 4), torch.arange(30) % 3
    pools = bal.class_pools(feats, feat_labels, 6, generator)
    assert sorted(pools) == [0, 1, 2] and all(len(pool) == 6 for pool in pools.values())
    assert all(any(torch.equal(row, f) for f in feats[feat_labels == label]) for label, pool in pools.items() for row in pool)
    gen, gen_labels = torch.randn(7, 4, requires_grad=True), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    brute = torch.stack([(pools[int(gen_labels[i])] - gen[i]).abs().sum(1).min() for i in range(7)])
    nearest = bal.nearest_l1(gen, gen_labels, pools)
    torch.testing.assert_close(nearest, brute)
    # the gradient of the minimum: sign(g - f*) toward each g's nearest pool feature, as through the full search
    assert torch.equal(torch.autograd.grad(nearest.sum(), gen)[0], torch.autograd.grad(brute.sum(), gen)[0])


def test_bal_gradients_reach_generator_and_discriminator():
    torch.manual_seed(0)
    method = bal.BAL(None)
    g, d = bal.Generator(8, 3, 6, 16), bal.Discriminator(3, 6, 16)
    f, c = torch.randn(32, 6), torch.randint(3, (32,))
    method.discriminator_loss(d, g, f, c, 3, torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    d.zero_grad()
    method.generator_loss(d, g, 32, {label: f[c == label] for label in range(3)}, torch.Generator().manual_seed(1)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


def test_bal_fgsm_step_lowers_the_discriminator():
    torch.manual_seed(0)
    d = bal.Discriminator(3, 6, 16)
    f, c = torch.randn(100, 6), torch.randint(3, (100,))
    stepped = bal.fgsm_toward_boundary(d, f, c, torch.full((100,), 0.05))
    with torch.no_grad():
        assert (torch.sigmoid(d(stepped, c)) < torch.sigmoid(d(f, c))).float().mean() > 0.95


def test_bal_fgsm_step_sizes_are_never_negative():
    steps = bal.fgsm_step_sizes(100_000, 0.1, 0.05, torch.Generator().manual_seed(0))
    assert steps.min() == 0 and 0.015 < (steps == 0).float().mean() < 0.03  # the ~2% of N(0.1, 0.05) below 0
    assert steps.mean() == pytest.approx(0.1, abs=0.002)


def test_bal_fit_and_score_separate_off_manifold_features(registry, tmp_path):
    rng = np.random.default_rng(0)
    means = rng.normal(0, 3, (3, 6))
    labels = np.repeat(np.arange(3), 200)
    features = torch.tensor(means[labels] + rng.normal(0, 0.5, (600, 6)), dtype=torch.float32)
    logits = features @ torch.tensor(means.T, dtype=torch.float32)
    cls = registry.method("bal")
    method = fit_with(cls(resolve_params(cls, "x", "none", {"epochs": "15", "batch_size": "64"})), torch.tensor(labels),
                      tmp_path, features=features, logits=logits)
    assert set(method.state) == {"mean", "std", "discriminator", "generator"}
    inliers = score_with(method, num_classes=3, features=features[:100], logits=logits[:100])
    far = torch.tensor(rng.normal(0, 3, (100, 6)) * 4, dtype=torch.float32)
    outliers = score_with(method, num_classes=3, features=far, logits=far @ torch.tensor(means.T, dtype=torch.float32))
    assert outliers.median() > inliers.median()


def test_bal_learns_the_id_support_in_two_dimensions(registry, tmp_path):
    """In the spirit of the BAL repository's 2-D demonstration: three Gaussian classes, the features
    are the inputs (an identity backbone) and a linear head gives the logits. Uniform points off the
    support must get a low D(x; c^), although the linear head is confident far from the origin."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    angles = 2 * np.pi * np.arange(3) / 3
    centers = 4 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    head = torch.tensor(centers, dtype=torch.float32)

    def points(per_class):
        return torch.tensor(centers[np.repeat(np.arange(3), per_class)] + rng.normal(0, 0.5, (3 * per_class, 2)), dtype=torch.float32)

    train, held_out = points(600), points(200)
    box = rng.uniform(-8, 8, (6000, 2))
    off_support = torch.tensor(box[np.linalg.norm(box[:, None] - centers[None], axis=2).min(axis=1) > 2.0][:2000], dtype=torch.float32)
    cls = registry.method("bal")
    fitted = fit_with(cls(resolve_params(cls, "x", "none", {"epochs": "60", "batch_size": "64"})),
                      torch.arange(3).repeat_interleave(600), tmp_path, features=train, logits=train @ head.T)

    def auroc(outlier_score):
        scores = torch.cat([outlier_score(held_out), outlier_score(off_support)]).numpy()
        return roc_auc_score(np.r_[np.zeros(len(held_out)), np.ones(len(off_support))], scores)

    def d_of(x):
        d = bal.Discriminator(3, 2, fitted.params.hidden).eval()
        d.load_state_dict(fitted.state["discriminator"])
        with torch.no_grad():
            return torch.sigmoid(d((x - fitted.state["mean"]) / fitted.state["std"], (x @ head.T).argmax(dim=1)))

    d_auroc = auroc(lambda x: -d_of(x))
    bal_auroc = auroc(lambda x: score_with(fitted, num_classes=3, features=x, logits=x @ head.T))
    msp_auroc = auroc(lambda x: -(x @ head.T).softmax(dim=1).max(dim=1).values)
    assert d_auroc >= 0.95, d_auroc
    assert bal_auroc > msp_auroc + 0.1, (bal_auroc, msp_auroc)


# -- ALOE and ATOM -----------------------------------------------------------------------------------

def _context(model, n=64, classes=4, aux=48, scratch=Path("/nonexistent")):
    from oodbench.engine.device import Compute
    from oodbench.engine.inputs import training_context

    class Ctx:  # the engine context a training context is made from
        compute = Compute(torch.device("cpu"), "fp32", channels_last=False)

        @staticmethod
        def forwarded(count):
            pass

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, n)

    class Split:
        def __init__(self, images, labels):
            self.images, self.labels = images, labels

        def __len__(self):
            return len(self.labels)

    aux_split = Split(rng.integers(0, 256, (aux, 4, 4, 3), dtype=np.uint8), np.full(aux, -1))
    return training_context(Ctx, model, Split(images, labels), aux_split, 0, scratch, "test")


class Tiny(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.Tanh())
        self.fc = nn.Linear(16, classes)

    def features(self, x):
        return self.body(x)


def test_atom_mining_keeps_the_quantile_slice_and_the_largest_the_pool_allows():
    from oodbench.methods.atom import mined_slice

    probabilities = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4])  # ascending order: 1 5 3 7 2 4 6 0
    start, chosen = mined_slice(probabilities, 0.25, 3)
    assert start == 2 and chosen.tolist() == [3, 7, 2]
    start, chosen = mined_slice(probabilities, 0.25, 100)  # pool smaller than M: keep q, take what is left
    assert start == 2 and chosen.tolist() == [3, 7, 2, 4, 6, 0]


def test_atom_loss_on_a_hand_checkable_batch():
    method = atom.ATOM(None)
    logits_in, targets = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])  # K = 2 classes + the outlier class
    logits_out = torch.tensor([[0.0, 0.0, 1.0]])
    ce_in = -math.log(math.exp(2) / (math.exp(2) + 2))
    ce_out = -math.log(math.e / (math.e + 2))
    assert method.outlier_loss(logits_in, targets, logits_out, 2).item() == pytest.approx(ce_in + ce_out, abs=1e-6)


def test_atom_adds_an_outlier_class_and_perturbs_half_of_the_outliers_toward_id():
    model = ImageClassifier(Tiny(), (0.5,) * 3, (0.25,) * 3)
    method = atom.ATOM(resolve_params(atom.ATOM, "x", "smoke"))
    context = _context(model)
    facts = method.prepare(context)
    assert facts["outputs"] == 5 and model.num_classes == 4 and model.num_outputs == 5
    x_in, x_out = torch.rand(8, 3, 4, 4), torch.rand(8, 3, 4, 4)
    _, perturbed = method.perturb(context, x_in, torch.zeros(8, dtype=torch.long), x_out, torch.Generator().manual_seed(0))
    assert torch.equal(perturbed[4:], x_out[4:]) and not torch.equal(perturbed[:4], x_out[:4])
    assert (perturbed - x_out).abs().max() <= 8 / 255 + 1e-6
    with torch.no_grad():  # toward ID: the loss on the outlier label rises
        loss = torch.nn.functional.cross_entropy(model(perturbed[:4]), torch.full((4,), 4), reduction="none")
        before = torch.nn.functional.cross_entropy(model(x_out[:4]), torch.full((4,), 4), reduction="none")
    assert (loss >= before - 1e-6).all() and (loss > before).any()
    pool, mined = method.epoch_pool(context, 0, torch.Generator())
    assert mined == {"pool": 48, "slice_start": 6, "mined": 42} and len(pool) == 42


def test_aloe_trains_on_inliers_and_outliers_pushed_against_its_loss():
    model = ImageClassifier(Tiny(), (0.5,) * 3, (0.25,) * 3).eval()
    method = aloe.ALOE(resolve_params(aloe.ALOE, "x", "quick"))
    assert not method.params.from_scratch and method.params.steps == 2 and method.attack_passes == 2
    context = _context(model)
    x_in, x_out, y = torch.rand(8, 3, 4, 4), torch.rand(8, 3, 4, 4), torch.arange(8) % 4
    adv_in, adv_out = method.perturb(context, x_in, y, x_out, torch.Generator().manual_seed(0))
    assert (adv_in - x_in).abs().max() <= 1 / 255 + 1e-6 and (adv_out - x_out).abs().max() <= 1 / 255 + 1e-6
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy
        assert ce(model(adv_in), y) > ce(model(x_in), y)
        assert oe.uniform_term(model(adv_out)).mean() > oe.uniform_term(model(x_out)).mean()
    # the objective is Outlier Exposure's, on those inputs
    logits_in, logits_out = torch.randn(3, 4), torch.randn(5, 4)
    assert method.outlier_loss(logits_in, y[:3], logits_out, 4) == oe.outlier_exposure_loss(logits_in, y[:3], logits_out, 0.5)


def test_an_outlier_training_epoch_covers_every_id_image_including_the_last_partial_batch(tmp_path):
    shown = []

    class CountingOE(oe.OutlierExposure):
        def perturb(self, context, x_in, y, x_out, generator):
            shown.append((len(x_in), len(x_out)))
            return x_in, x_out

    model = ImageClassifier(Tiny(), (0.5,) * 3, (0.25,) * 3)
    method = CountingOE(resolve_params(oe.OutlierExposure, "x", "smoke", {"epochs": "1", "batch_size": "16", "aux_batch_size": "8"}))
    method.train(_context(model, n=70, scratch=tmp_path))
    assert shown == [(16, 8)] * 4 + [(6, 8)]
    assert method.training_images(70, 48) == 70 + 5 * 8


def test_a_compiled_finetune_gives_the_eager_losses_and_compiles_one_graph(tmp_path):
    """OE's loop through torch.compile (dynamo's capture, eager kernels: equal numbers): the short last batch
    (6 + 8 images against 16 + 8) runs eagerly, without compiling a second graph."""
    import dataclasses

    from torch._dynamo.utils import counters

    from oodbench.engine.inputs import finetune_forward

    params = resolve_params(oe.OutlierExposure, "x", "smoke", {"epochs": "2", "batch_size": "16", "aux_batch_size": "8"})
    losses = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        counters.clear()
        model = ImageClassifier(Tiny(), (0.5,) * 3, (0.25,) * 3)
        context = dataclasses.replace(_context(model, n=70, scratch=tmp_path / str(compiled)),
                                      forward_for=lambda module, steps, on=compiled: finetune_forward(module, on, backend="eager"))
        losses[compiled] = oe.OutlierExposure(params).train(context)["loss_per_epoch"]
        graphs = counters["stats"]["unique_graphs"]
    assert losses[True] == losses[False]
    assert graphs == 1
