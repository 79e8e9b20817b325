"""Multiple Input Mixup (Choi & Na, arXiv 2312.15514): fine-tune on averages of ID images as outliers.

A pre-trained classifier is fine-tuned for one epoch on the ID training split, in **eval mode**
(BatchNorm statistics frozen, dropout off; all parameters trained), with SGD (lr 1e-4,
momentum 0.9, no weight decay, no schedule), batches of 128 without reshuffling and no
augmentation of the ID images. "Without reshuffling" means one fixed order: the original iterates
CIFAR's stored order, which the dataset already randomised; ImageFolder archives (every catalog
set) store images sorted by class, and class-sorted batches wreck the fine-tune (measured on
cifar10-jpeg with WRN-16-2: ID accuracy 0.878 -> 0.709). So the split is visited in one random
permutation drawn from the seed (``fixed_order=False`` visits the stored order instead).
Per batch ``x`` of ``B`` images:

- ``L_id = CE(f(x), y)``;
- ``k`` independent permutations of the batch; synthetic outlier ``i`` is the plain average of
  the ``k`` images at position ``i`` of those permutations (weights ``1/k``, repeats allowed):
  :func:`multiple_input_mixup`;
- each mixed image is augmented with probability ``p_aug``: ColorJitter(brightness 0.5, contrast
  0.3, saturation 0.3, hue 0.3), then RandomAffine(rotation +-90 degrees, translation 0.2), in
  pixel space (the network takes [0, 1] pixels and normalises inside, so nothing is undone):
  :func:`augment_mixed`;
- ``L_ood = mean_i CE(f(x_mix_i), uniform) = mean_i -(1/K) sum_c log softmax_c(f(x_mix_i))``;
- one SGD step on ``L_id + L_ood``.

``k = 10`` and ``p_aug = 0.5`` for CIFAR-10 (and by default for other ID sets), ``k = 5`` and
``p_aug = 1.0`` for CIFAR-100. Detection: maximum softmax probability of the fine-tuned network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_ood.detector import MaxSoftmax
from torch import Tensor

from oodbench.api import Method, Reads, ScoreInputs, TrainingContext
from oodbench.data.augment import JitterAffine
from oodbench.data.batches import take, to_device
from oodbench.models.distributed import World
from oodbench.models.training import EpochState, RunningLoss


@dataclass(frozen=True)
class MimParams:
    #: images averaged into one synthetic outlier
    k: int = 10
    #: probability that a mixed image is augmented
    p_aug: float = 0.5
    lr: float = 1e-4
    momentum: float = 0.9
    epochs: int = 1
    batch_size: int = 128
    #: visit the stored order (True) or one seeded random permutation of it (False, see above)
    fixed_order: bool = False


def multiple_input_mixup(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """``mixed_i = (1/k) sum_j x[perm_j(i)]`` for ``k`` independent random permutations of the batch."""
    permutations = to_device(torch.stack([torch.randperm(x.shape[0], generator=generator) for _ in range(k)]), x.device)
    return x[permutations].mean(dim=0)


#: the notebooks' ``Compose([ColorJitter(0.5, 0.3, 0.3, 0.3), RandomAffine(90, translate=(0.2, 0.2))])``, batched
MIXED_AUGMENTATION = JitterAffine(brightness=0.5, contrast=0.3, saturation=0.3, hue=0.3, degrees=90, translate=0.2)


def augment_mixed(pixels: Tensor, probability: float, generator: torch.Generator) -> Tensor:
    """Apply :data:`MIXED_AUGMENTATION` to each image (pixels in [0, 1]) with the given probability.

    Each chosen image draws its own jitter and affine parameters (torch's global generator), as
    the per-image transform would; the chosen images are transformed as one batch.
    """
    chosen = (torch.rand(pixels.shape[0], generator=generator) < probability).nonzero().flatten()
    if not len(chosen):
        return pixels
    index = to_device(chosen, pixels.device)
    out = pixels.clone()
    out[index] = MIXED_AUGMENTATION(pixels[index].float().clamp(0, 1)).to(out.dtype)
    return out


def uniform_cross_entropy(logits: Tensor) -> Tensor:
    """``mean_i -(1/K) sum_c log softmax_c(logits_i)``: cross-entropy to the uniform distribution."""
    return -F.log_softmax(logits, dim=1).mean(dim=1).mean()


class MIM(Method):
    name = "mim"
    table_order = 200
    citation = "Choi & Na, Multiple Input Mixup for Out-of-Distribution Detection, arXiv 2312.15514 (2023)"
    summary = "one epoch of fine-tuning with averages of k ID images as uniform-target outliers; MSP"
    Params = MimParams
    dataset_defaults = {"cifar100": {"k": 5, "p_aug": 1.0}}
    reads = frozenset({Reads.LOGITS})
    attacked_through = "score"
    trains = True
    #: data-parallel under torchrun: every process mixes the same global batch and trains on its slice
    distributed = True

    def training_images(self, n_id: int, n_aux: int) -> int:
        return self.params.epochs * 2 * n_id  # each batch and its mixed outliers

    def train(self, context: TrainingContext) -> dict:
        p = self.params
        world = World.current()
        model = context.model.eval()
        optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=0.0)
        state = EpochState(context.scratch, context.device)
        start, extra = state.restore(model=model, optimizer=optimizer)
        labels = to_device(torch.as_tensor(context.id_labels, dtype=torch.long), context.device)
        n = len(labels)
        steps = math.ceil(n / p.batch_size)
        order = np.arange(n) if p.fixed_order else torch.randperm(n, generator=torch.Generator().manual_seed(context.seed)).numpy()
        losses = extra.get("losses", [])
        forward = context.forward_for(world.wrap(model, context.device), p.epochs * steps)
        for epoch in range(start, p.epochs):
            generator = torch.Generator().manual_seed(context.seed * 7919 + epoch)
            total = RunningLoss()
            bar = context.progress(range(steps), f"epoch {epoch + 1}/{p.epochs}", total=steps)
            for step in bar:
                index = np.sort(order[step * p.batch_size : (step + 1) * p.batch_size])
                x = context.pixels(context.id_images[index])
                y = take(labels, index)
                mixed = augment_mixed(multiple_input_mixup(x, p.k, generator), p.p_aug, generator)
                share = world.weight(len(world.shard(y)), len(y))
                x, y, mixed = world.shard(x), world.shard(y), world.shard(mixed)
                with context.precision():
                    logits = forward(torch.cat([x, mixed])).float()
                loss = F.cross_entropy(logits[: len(x)], y) + uniform_cross_entropy(logits[len(x):])
                context.backward_step(loss * share, optimizer)
                total.add(loss, share)
                context.on_images(2 * len(x))
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{total.mean(step + 1):.3f}")
            losses.append(world.mean(total.mean(steps)))
            if world.writer:
                state.save(epoch + 1, {"losses": losses}, model=model, optimizer=optimizer)
        return {"epochs": p.epochs, "loss_per_epoch": losses, "world_size": world.size}

    def score(self, data: ScoreInputs) -> Tensor:
        return MaxSoftmax.score(data.logits)

    def attack_score(self, model, pixels: Tensor) -> Tensor:
        return MaxSoftmax.score(model.class_logits(pixels).float())
