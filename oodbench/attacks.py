"""Adversarial evaluation: L-inf PGD on a detector's own outlier score (ALOE / ATOM protocols).

The attack works in [0, 1] pixel space (the classifier normalises inside, so ``eps`` is in pixel
units) and maximises the detector's error: OOD inputs are pushed toward ID (the outlier score
goes down), ID inputs toward OOD (it goes up). Protocols (``--attack``):

- ``aloe`` (Chen et al., arXiv 2003.09711): eps 1/255, 10 steps of 1/255, random start, ID and OOD;
- ``atom`` (Chen et al., ECML 2021): eps 8/255, 40 steps of 1/255, random start, OOD only;
- ``pgd:eps=E,steps=S,step=A,target=id|ood|both``: any other (values may be fractions: ``8/255``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import torch
from torch import Tensor

from oodbench.data.batches import to_device
from oodbench.errors import ConfigError

TARGETS = ("id", "ood", "both")


@dataclass(frozen=True)
class AttackSpec:
    """An L-inf PGD attack: radius, steps, step size, which inputs it perturbs, random start."""

    name: str
    eps: float
    steps: int
    step_size: float
    target: str
    random_start: bool = True

    def attacks(self, role: str) -> bool:
        """Whether inputs of ``role`` ('id' or 'ood') are perturbed."""
        return self.target in (role, "both")

    def describe(self) -> str:
        def px(value: float) -> str:
            return f"{Fraction(value).limit_denominator(1000)}"

        inputs = {"id": "ID", "ood": "OOD", "both": "ID and OOD"}[self.target]
        return (f"{self.name}: L-inf PGD eps {px(self.eps)}, {self.steps} steps of {px(self.step_size)}"
                f"{', random start' if self.random_start else ''}, on {inputs} inputs")


PROTOCOLS = {
    "aloe": AttackSpec("aloe", 1 / 255, 10, 1 / 255, "both"),
    "atom": AttackSpec("atom", 8 / 255, 40, 1 / 255, "ood"),
}


def _number(text: str, key: str, spec: str) -> float:
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--attack {spec!r}: {key}={text!r} is not a number", "e.g. eps=8/255 or eps=0.0314") from None


def parse_attack(spec: str) -> AttackSpec:
    """``aloe``, ``atom`` or ``pgd:eps=E,steps=S,step=A,target=id|ood|both``."""
    if spec in PROTOCOLS:
        return PROTOCOLS[spec]
    kind, _, assignments = spec.partition(":")
    if kind != "pgd" or not assignments:
        raise ConfigError(f"unknown attack {spec!r}",
                          f"use {', '.join(PROTOCOLS)} or pgd:eps=E,steps=S,step=A,target=id|ood|both")
    values = dict(item.partition("=")[::2] for item in assignments.split(","))
    unknown = set(values) - {"eps", "steps", "step", "target", "random_start"}
    if unknown or not {"eps", "steps", "step", "target"} <= set(values):
        raise ConfigError(f"--attack {spec!r} needs eps, steps, step and target (and may set random_start)",
                          "e.g. pgd:eps=8/255,steps=40,step=1/255,target=ood")
    if values["target"] not in TARGETS:
        raise ConfigError(f"--attack {spec!r}: target must be one of {', '.join(TARGETS)}")
    return AttackSpec("pgd", _number(values["eps"], "eps", spec), int(_number(values["steps"], "steps", spec)),
                      _number(values["step"], "step", spec), values["target"],
                      values.get("random_start", "true").lower() in {"true", "1", "yes"})


def pgd(score: Callable[[Tensor], Tensor], pixels: Tensor, spec: AttackSpec, ascend: bool, generator: torch.Generator,
        precision: Callable = torch.enable_grad, keep_best: bool = False) -> Tensor:
    """Perturbed ``pixels`` within the L-inf ball of ``spec.eps`` (and [0, 1]) that move the per-sample
    ``score`` up (``ascend``) or down, by ``spec.steps`` signed-gradient steps of ``spec.step_size``.

    ``score`` maps a batch to one value per sample; ``precision`` is the autocast context the
    forward passes run under (the gradient step itself is taken in float32). ``keep_best``
    returns, per sample, the iterate that moved the score furthest (ATOM's training attack)
    instead of the last one.
    """
    origin = pixels.detach().float()
    adversarial = origin.clone()
    if spec.random_start:
        noise = to_device(torch.rand(origin.shape, generator=generator), origin.device)
        adversarial = (origin + (2 * noise - 1) * spec.eps).clamp(0, 1)
    direction = 1.0 if ascend else -1.0
    best, best_value = adversarial.clone(), None

    def remember(candidate: Tensor, value: Tensor) -> None:
        nonlocal best, best_value
        better = torch.ones_like(value, dtype=torch.bool) if best_value is None else direction * value > direction * best_value
        best = torch.where(better.view(-1, *[1] * (candidate.dim() - 1)), candidate, best)
        best_value = value if best_value is None else torch.where(better, value, best_value)

    for _ in range(spec.steps):
        adversarial.requires_grad_(True)
        with torch.enable_grad(), precision():
            values = score(adversarial).float()
        (gradient,) = torch.autograd.grad(values.sum(), adversarial)
        if keep_best:
            remember(adversarial.detach(), values.detach())
        stepped = adversarial.detach() + direction * spec.step_size * gradient.sign()
        adversarial = torch.min(torch.max(stepped, origin - spec.eps), origin + spec.eps).clamp(0, 1)
    if keep_best:
        with torch.no_grad(), precision():
            remember(adversarial, score(adversarial).float())
        return best.detach()
    return adversarial.detach()
