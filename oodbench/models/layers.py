"""Intermediate layers' outputs: which ones a method reads on a backbone, and capturing them, reduced, during
the forward pass that also gives logits and features (forward hooks on the submodules the backbone names)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from oodbench.api import EVERY_LAYER, GRAM_ORDERS, Reduction
from oodbench.errors import ConfigError

#: a layer read: the layer's name and how its output is reduced
LayerRead = tuple[str, Reduction]
#: a layer path ending in this names the input of the module, not its output
INPUT = ":input"
#: the prefix of a layer's values among a batch's (or a sealed worker's) arrays: ``"layers.last_map"``
LAYER_PREFIX = "layers."


def layer_key(read: LayerRead) -> str:
    """The name a layer read's values go by in extractions and batches: ``"last_map:map"``."""
    return f"{read[0]}:{read[1].value}"


def resolve_layers(declared: Mapping[str, Reduction], available: Sequence[str], method: str, backbone: str) -> tuple[LayerRead, ...]:
    """The layers ``declared`` by ``method`` among the ``available`` ones of ``backbone`` (in its forward order):
    ``"*"`` is every one of them. A name the backbone does not expose is a configuration error."""
    if not declared:
        return ()
    if EVERY_LAYER in declared:
        if not available:
            raise ConfigError(f"method {method} reads every intermediate layer, and backbone {backbone} exposes none",
                              "choose a backbone that declares layers (oodbench list backbones)")
        return tuple((name, declared[EVERY_LAYER]) for name in available)
    missing = sorted(set(declared) - set(available))
    if missing:
        raise ConfigError(f"method {method} reads layer(s) {missing}, which backbone {backbone} does not expose "
                          f"(it exposes {list(available) or 'none'})", "choose a backbone that declares them, or another method")
    return tuple((name, declared[name]) for name in available if name in declared)


def reduce(output: Tensor, reduction: Reduction, keep_graph: bool = False) -> Tensor:
    """``output`` (``N x C x ...``) reduced as declared, float32, not sharing memory with it; unless ``keep_graph``:
    then the output itself, in its dtype and in the graph (a cast would be a copy no gradient flows through to)."""
    if keep_graph:
        return output
    output = output.detach()
    if reduction is Reduction.CHANNEL_MEAN:
        return channel_means(output).clone()
    if reduction is Reduction.GRAM:
        return gram_row_sums(output)
    return output.float().clone()


def channel_means(output: Tensor) -> Tensor:
    """:attr:`Reduction.CHANNEL_MEAN` of ``output``, float32, ``N x C`` (in the graph when ``output`` is)."""
    return output.float().flatten(2).mean(2) if output.dim() > 2 else output.float()


def gram_row_sums(maps: Tensor, orders: int = GRAM_ORDERS) -> Tensor:
    """:attr:`Reduction.GRAM` of ``N x C x ...`` maps: ``N x orders x C``. A row sum of ``F^p F^p^T`` is
    ``F^p`` times the channel sum of ``F^p`` at each position, so no ``C x C`` matrix is formed; float64 inside,
    as ``F^10`` of large activations leaves float32's range."""
    flat = maps.detach().double().flatten(2)
    rows = []
    for p in range(1, orders + 1):
        powered = flat ** p
        summed = (powered * powered.sum(dim=1, keepdim=True)).sum(dim=2)
        rows.append(summed.sign() * summed.abs() ** (1 / p))
    return torch.stack(rows, dim=1).float()


def _keeper(values: dict[str, Tensor], read: LayerRead, keep_graph: bool):
    """A forward hook that keeps the reduced output of the layer of ``read`` in ``values``."""
    key = layer_key(read)

    def hook(module: nn.Module, _inputs, output) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(f"layer {read[0]} ({type(module).__name__}) returns a {type(output).__name__}, not a tensor; "
                            "a backbone's layers must name modules that return one")
        values[key] = reduce(output, read[1], keep_graph)

    return hook


@contextmanager
def captured(net: nn.Module, paths: Mapping[str, str], reads: Sequence[LayerRead],
             keep_graph: bool = False) -> Iterator[dict[str, Tensor]]:
    """While open, every forward pass of ``net`` leaves in the yielded dict, under :func:`layer_key`, the reduced
    output of each read layer (``paths``: layer name -> dotted submodule path in ``net``; a path ending in
    ``":input"`` takes what that module receives instead); with ``keep_graph``, the unreduced maps in the graph."""
    values: dict[str, Tensor] = {}
    handles = []
    try:
        for read in reads:
            path = paths[read[0]]
            if path.endswith(INPUT):  # the tensor a module receives (a map that only a functional op produced)
                module = net.get_submodule(path[: -len(INPUT)])
                keep = _keeper(values, read, keep_graph)
                handles.append(module.register_forward_pre_hook(lambda module, inputs, keep=keep: keep(module, inputs, inputs[0])))
            else:
                handles.append(net.get_submodule(path).register_forward_hook(_keeper(values, read, keep_graph)))
        yield values
    finally:
        for handle in handles:
            handle.remove()
