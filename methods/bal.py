"""Boundary Aware Learning (Pei, Zhang, Fan & Meng, ECCV 2022): a conditional GAN on frozen features.

The classifier is not changed. A conditional discriminator ``D(f; c)`` in [0, 1] learns whether a
penultimate feature vector ``f`` lies on the ID manifold of class ``c``; the outlier score is
``-(p1 * p2)`` with ``p1 = max softmax(f(x))``, ``c^ = argmax``, ``p2 = D(h(x); c^)``.

Training on the ID **training** features ``f`` with labels ``c`` (no official code exists; the
paper's description is the specification, and the choices it leaves open are marked *choice*):

- trivial OOD (REM): uniform samples in the box spanned by the per-dimension min and max of the
  batch's features, with random labels: :func:`box_samples`;
- hard OOD (RSM): generated features ``G(z; c)`` pushed toward the boundary by one FGSM step on
  the discriminator, ``f~ = f - eps * sign(dD(f; c)/df)``, ``eps`` drawn per sample from
  ``N(eps_mean, eps_std)`` (*choice*: 0.1 and 0.05, in units of the feature standard deviation)
  and clipped at 0: about 2% of the draws are negative and would step toward the ID side instead:
  :func:`fgsm_toward_boundary`;
- discriminator losses (*choice*: the terms the losses *minimise* without bound, ``log D`` of the
  shuffled and OOD pairs and the generator's ``log(1 - D)``, are floored at log(1e-4); the
  cross-entropy terms ``-log D(real)`` and ``-log(1 - D(fake))`` are not, so a wrong
  discriminator always gets a gradient back):

  * ``L_t = -E log D(f; c) - E log(1 - D(G(z; c); c))`` (vanilla conditional GAN)
  * ``L_s = E[log D(f; T(c)) - log D(f; c)]`` with ``T(c)`` a random label other than ``c``
  * ``L_u = lambda_c * E log D(f^; c^) - E log D(f; c)`` over the trivial (and hard) OOD pairs,
    ``lambda_c = 0.7``
  * ``L_D = L_t + L_s + L_u`` (``use_shuffle`` / ``use_uniform`` drop terms for the ablations);

- generator loss ``L_G = E log(1 - D(G(z; c); c)) + lambda * E min_{f_c} ||f_c - G(z; c)||_1``,
  ``lambda = 0.01``, random labels ``c``; the minimum runs over a random pool of up to 256 ID
  training features of class ``c``, redrawn every epoch (*choice*: all 5,000 per CIFAR-10 class
  would make this term cost more than the rest of the training).

*Choices* for what the paper leaves open: features are standardised per dimension with the ID
training mean and standard deviation; ``G`` and ``D`` are MLPs with two hidden layers of 256
units (LeakyReLU 0.2); ``D`` is a projection discriminator (Miyato & Koyama, ICLR 2018:
``psi(phi(f)) + <embed(c), phi(f)>``); noise size 64; Adam (lr 2e-4, betas 0.5 / 0.999); 30
epochs of batches of 256; one D step and one G step per batch. The fitted state is the
discriminator's weights and the feature standardisation, which scoring uses, and the generator's
weights, which only ``benchmarks/bal_diagnostics.py`` reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_ood.detector import MaxSoftmax
from torch import Tensor, nn

from oodbench.api import FitInputs, Method, Reads, ScoreInputs
from oodbench.data.batches import to_device
from oodbench.models.training import EpochState

LOG_FLOOR = math.log(1e-4)


@dataclass(frozen=True)
class BalParams:
    epochs: int = 30
    batch_size: int = 256
    noise_dim: int = 64
    hidden: int = 256
    lr: float = 2e-4
    #: weight of the OOD term in the uniform loss L_u
    lambda_c: float = 0.7
    #: weight of the generator's L1 term
    lambda_l1: float = 0.01
    #: include the shuffle loss L_s
    use_shuffle: bool = True
    #: include the uniform loss L_u
    use_uniform: bool = True
    #: trivial OOD (box samples) in L_u
    use_trivial: bool = True
    #: hard OOD (FGSM-pushed generated features) in L_u
    use_hard: bool = True
    #: FGSM step size distribution (standardised feature units)
    eps_mean: float = 0.1
    eps_std: float = 0.05
    #: ID features per class the generator's L1 nearest-neighbour term searches (redrawn each epoch)
    l1_pool: int = 256
    #: "minimax": L_G = E log(1 - D(G)) as the paper writes it; "nonsaturating": E -log D(G)
    #: (Goodfellow et al. 2014, section 3), which keeps the generator learning when D rejects its samples
    generator_loss: str = "minimax"


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, outputs))


class Generator(nn.Module):
    """``G(z; c)``: noise and a label embedding to a (standardised) feature vector."""

    def __init__(self, noise_dim: int, classes: int, features: int, hidden: int) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.embed = nn.Embedding(classes, noise_dim)
        self.net = _mlp(2 * noise_dim, hidden, features)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.net(torch.cat([z, self.embed(labels)], dim=1))


class Discriminator(nn.Module):
    """Projection discriminator: the logit of ``D(f; c)`` is ``psi(phi(f)) + <embed(c), phi(f)>``."""

    def __init__(self, classes: int, features: int, hidden: int) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(features, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))
        self.psi = nn.Linear(hidden, 1)
        self.embed = nn.Embedding(classes, hidden)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """The logit; ``D = sigmoid(logit)``."""
        h = self.phi(features)
        return self.psi(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


def log_d(logit: Tensor) -> Tensor:
    """``log D`` from the discriminator's logit."""
    return F.logsigmoid(logit)


def log_one_minus_d(logit: Tensor) -> Tensor:
    """``log(1 - D)`` from the discriminator's logit."""
    return F.logsigmoid(-logit)


def floored(log_probability: Tensor) -> Tensor:
    """A log-probability that a loss minimises, floored at log(1e-4) so the minimum is finite."""
    return log_probability.clamp(min=LOG_FLOOR)


def box_samples(features: Tensor, classes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Trivial OOD: uniform samples in the per-dimension [min, max] box of the batch, random labels."""
    low, high = features.min(dim=0).values, features.max(dim=0).values
    u = to_device(torch.rand(features.shape, generator=generator), features.device)
    labels = to_device(torch.randint(classes, (features.shape[0],), generator=generator), features.device)
    return low + u * (high - low), labels


def fgsm_step_sizes(count: int, mean: float, std: float, generator: torch.Generator) -> Tensor:
    """Per-sample FGSM step sizes drawn from ``N(mean, std)`` and clipped at 0 (a negative step
    would move a generated feature toward the ID side of the boundary)."""
    return (mean + std * torch.randn(count, generator=generator)).clamp_min(0)


def fgsm_toward_boundary(d: Discriminator, features: Tensor, labels: Tensor, eps: Tensor) -> Tensor:
    """One FGSM step that lowers ``D``: ``f - eps * sign(dD(f; c)/df)``, per-sample ``eps``."""
    features = features.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(torch.sigmoid(d(features, labels)).sum(), features)
    return (features - eps.view(-1, 1) * gradient.sign()).detach()


def shuffled_labels(labels: Tensor, classes: int, generator: torch.Generator) -> Tensor:
    """``T(c)``: a uniformly random label different from ``c``."""
    offset = to_device(torch.randint(1, classes, labels.shape, generator=generator), labels.device)
    return (labels + offset) % classes


def class_pools(features: Tensor, labels: Tensor, size: int, generator: torch.Generator) -> dict[int, Tensor]:
    """Up to ``size`` random feature vectors of every class, by class."""
    order = to_device(torch.randperm(labels.shape[0], generator=generator), labels.device)
    shuffled = labels[order]
    return {label: features[order[shuffled == label][:size]] for label in labels.unique().tolist()}


def nearest_l1(generated: Tensor, labels: Tensor, pools: dict[int, Tensor]) -> Tensor:
    """``min_{f in pools[c_i]} ||f - g_i||_1`` for every generated ``g_i`` with label ``c_i``.

    The search runs without autograd; only the distance to the nearest ``f*`` is recomputed under
    autograd. Its gradient ``sign(g_i - f*)`` is the one the minimum of a ``cdist`` has, without
    ``cdist``'s backward over the whole pool (a fifth of a BAL fit's CPU time).
    """
    nearest = torch.empty_like(generated)
    with torch.no_grad():
        for label in labels.unique().tolist():
            mine = labels == label
            nearest[mine] = pools[label][torch.cdist(generated[mine], pools[label], p=1).min(dim=1).indices]
    return (generated - nearest).abs().sum(dim=1)


def gan_loss(d: Discriminator, f: Tensor, c: Tensor, fake: Tensor, fake_labels: Tensor) -> Tensor:
    """``L_t = -E log D(f; c) - E log(1 - D(G(z; c); c))``."""
    return -log_d(d(f, c)).mean() - log_one_minus_d(d(fake, fake_labels)).mean()


def shuffle_loss(d: Discriminator, f: Tensor, c: Tensor, wrong: Tensor) -> Tensor:
    """``L_s = E[log D(f; T(c)) - log D(f; c)]``."""
    return (floored(log_d(d(f, wrong))) - log_d(d(f, c))).mean()


def uniform_loss(d: Discriminator, f: Tensor, c: Tensor, ood: Tensor, ood_labels: Tensor, lambda_c: float) -> Tensor:
    """``L_u = lambda_c * E log D(f^; c^) - E log D(f; c)`` over OOD pairs ``(f^, c^)``."""
    return lambda_c * floored(log_d(d(ood, ood_labels))).mean() - log_d(d(f, c)).mean()


def generator_objective(d: Discriminator, fake: Tensor, fake_labels: Tensor, nearest: Tensor, lambda_l1: float,
                        form: str = "minimax") -> Tensor:
    """``L_G = E log(1 - D(G(z; c); c)) + lambda * E min ||f_c - G(z; c)||_1`` (``nearest`` holds the minima);
    ``form="nonsaturating"`` replaces the first term by ``-E log D(G(z; c); c)``."""
    logit = d(fake, fake_labels)
    if form == "minimax":
        adversarial = floored(log_one_minus_d(logit)).mean()
    elif form == "nonsaturating":
        adversarial = -log_d(logit).mean()
    else:
        raise ValueError(f"bal.generator_loss must be 'minimax' or 'nonsaturating', not {form!r}")
    return adversarial + lambda_l1 * nearest.mean()


class BAL(Method):
    name = "bal"
    table_order = 220
    citation = "Sen Pei, Xin Zhang, Bin Fan & Gaofeng Meng, Out-of-Distribution Detection with Boundary Aware Learning, ECCV 2022"
    summary = "max softmax times a conditional GAN discriminator's ID probability of the features"
    Params = BalParams
    reads = frozenset({Reads.LOGITS, Reads.FEATURES})
    fits = True
    attacked_through = "score"
    #: the smoke preset trains the GAN for 2 epochs (seconds) instead of 30
    preset_defaults = {"smoke": {"epochs": 2}}

    def discriminator_loss(self, d: Discriminator, g: Generator, f: Tensor, c: Tensor, classes: int,
                           generator: torch.Generator) -> Tensor:
        """``L_D = L_t (+ L_s) (+ L_u)`` on one batch of real features ``f`` with labels ``c``."""
        p = self.params
        z = to_device(torch.randn(f.shape[0], g.noise_dim, generator=generator), f.device)
        fake_labels = to_device(torch.randint(classes, c.shape, generator=generator), f.device)
        fake = g(z, fake_labels).detach()
        loss = gan_loss(d, f, c, fake, fake_labels)
        if p.use_shuffle:
            loss = loss + shuffle_loss(d, f, c, shuffled_labels(c, classes, generator))
        ood, ood_labels = [], []
        if p.use_uniform and p.use_trivial:
            box, box_labels = box_samples(f, classes, generator)
            ood.append(box)
            ood_labels.append(box_labels)
        if p.use_uniform and p.use_hard:
            eps = to_device(fgsm_step_sizes(f.shape[0], p.eps_mean, p.eps_std, generator), f.device)
            ood.append(fgsm_toward_boundary(d, fake, fake_labels, eps))
            ood_labels.append(fake_labels)
        if ood:
            loss = loss + uniform_loss(d, f, c, torch.cat(ood), torch.cat(ood_labels), p.lambda_c)
        return loss

    def generator_loss(self, d: Discriminator, g: Generator, batch: int, pools: dict[int, Tensor],
                       generator: torch.Generator) -> Tensor:
        """``L_G`` for a batch of generated features with random labels; ``pools``: ID features by class. The
        labels are drawn from the classes the pools hold (all of them on a full training split; a class
        without training samples has no nearest feature to pull its generated ones toward)."""
        p = self.params
        device = g.embed.weight.device
        z = to_device(torch.randn(batch, g.noise_dim, generator=generator), device)
        present = torch.tensor(sorted(pools))
        fake_labels = to_device(present[torch.randint(len(present), (batch,), generator=generator)], device)
        fake = g(z, fake_labels)
        return generator_objective(d, fake, fake_labels, nearest_l1(fake, fake_labels, pools), p.lambda_l1, p.generator_loss)

    def fit(self, train: FitInputs) -> dict:
        p = self.params
        raw, labels = train.features.float(), train.labels.long()
        classes, dim = train.num_classes, raw.shape[1]
        mean, std = raw.mean(dim=0), raw.std(dim=0).clamp(min=1e-6)
        features = (raw - mean) / std
        generator = Generator(p.noise_dim, classes, dim, p.hidden).to(features.device)
        discriminator = Discriminator(classes, dim, p.hidden).to(features.device)
        opt_g = torch.optim.Adam(generator.parameters(), lr=p.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=p.lr, betas=(0.5, 0.999))
        state = EpochState(train.scratch, features.device)
        start = state.restore(g=generator, d=discriminator, opt_g=opt_g, opt_d=opt_d)[0]
        steps = max(1, features.shape[0] // p.batch_size)
        for epoch in range(start, p.epochs):
            rng = torch.Generator().manual_seed(train.seed * 7919 + epoch)
            order = to_device(torch.randperm(features.shape[0], generator=rng), features.device)
            pools = class_pools(features, labels, p.l1_pool, rng)
            for step in train.progress(range(steps), desc=f"bal GAN epoch {epoch + 1}/{p.epochs}", unit="batch"):
                index = order[step * p.batch_size : (step + 1) * p.batch_size]
                f, c = features[index], labels[index]
                loss_d = self.discriminator_loss(discriminator, generator, f, c, classes, rng)
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                loss_g = self.generator_loss(discriminator, generator, len(f), pools, rng)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            state.save(epoch + 1, g=generator, d=discriminator, opt_g=opt_g, opt_d=opt_d)
        return {"mean": mean, "std": std, "discriminator": discriminator.state_dict(), "generator": generator.state_dict()}

    def _confidence_product(self, logits: Tensor, features: Tensor) -> Tensor:
        """``-(p1 * p2)``: max softmax times the discriminator's ID probability at the predicted class."""
        discriminator = Discriminator(logits.shape[1], features.shape[1], self.params.hidden).to(features.device).eval()
        discriminator.load_state_dict(self.state["discriminator"])
        p1 = -MaxSoftmax.score(logits)
        p2 = torch.sigmoid(discriminator((features - self.state["mean"]) / self.state["std"], logits.argmax(dim=1)))
        return -(p1 * p2)

    @torch.no_grad()
    def score(self, data: ScoreInputs) -> Tensor:
        return self._confidence_product(data.logits.float(), data.features.float())

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        logits, features = model.forward_with_features(pixels)
        return self._confidence_product(logits[:, : model.num_classes].float(), features.float())
