"""A published classifier split into the body that makes its penultimate features and its head, the
``features`` / ``fc`` pair every backbone gives the engine (shared by the ImageNet backbone plugins)."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn


class Headless(nn.Module):
    """``body``: the classifier with its head (at the dotted path ``head``) replaced by the identity, so
    ``body(x)`` returns what the head reads, or ``features_of(body, x)`` when given; ``fc``: the head."""

    def __init__(self, model: nn.Module, head: str, features_of: Callable[[nn.Module, Tensor], Tensor] | None = None) -> None:
        super().__init__()
        owner, _, name = head.rpartition(".")
        parent = model.get_submodule(owner) if owner else model
        self.fc = getattr(parent, name)
        if not isinstance(self.fc, nn.Linear):
            raise TypeError(f"{type(model).__name__}.{head} is a {type(self.fc).__name__}, not the linear head oodbench reads")
        setattr(parent, name, nn.Identity())
        if owner and all(isinstance(m, nn.Identity) for m in parent.children()):
            setattr(model, owner, nn.Identity())  # a container that held only the head (ViT's ``heads``)
        self.body = model
        self._features_of = features_of

    def features(self, x: Tensor) -> Tensor:
        return self._features_of(self.body, x) if self._features_of else self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


def renames(head: str) -> tuple[tuple[str, str], ...]:
    """:attr:`BackboneSpec.state_renames` of a :class:`Headless` network: the publisher's head as ``fc``, the rest in ``body``."""
    return ((f"{head}.", "fc."), ("", "body."))
