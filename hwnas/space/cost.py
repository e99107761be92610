"""FLOPs and parameter counts per block and per architecture, in fvcore's convention.

FLOPs follow fvcore's convention: one multiply-add counts once (convolutions, linear layers), plus
fvcore's counts for batch norm and adaptive pooling. Each distinct block is counted once, alone at
its input shape, and cached, so costing an architecture needs no model build; the sum over blocks
equals fvcore on the built model because the model is exactly the sequence of block modules.

A block is counted from the shapes of one forward pass on the ``meta`` device (no arithmetic),
with fvcore's formula for each leaf layer (``meta_flops``); a block with a leaf layer outside those
formulas is traced by fvcore itself. fvcore's JIT trace cost 0.14 s per block, 238 s of a 2-step
MnasNet search on the ``mnasnet`` space (1,347 distinct blocks; issue 16, item 4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from hwnas.compat import import_fvcore_flops
from hwnas.space.blocks import Block, op_key
from hwnas.space.build import count_params
from hwnas.space.cells.ops import Concat
from hwnas.space.ops import make_module


@dataclass(frozen=True)
class Cost:
    """FLOPs (multiply-adds) and parameters."""

    flops: int
    params: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.params + other.params)


ZERO = Cost(0, 0)


def fvcore_flops(module: torch.nn.Module, inputs: torch.Tensor) -> int:
    """fvcore's total FLOP count of ``module`` on ``inputs`` (eval mode, warnings silenced)."""
    flop_count_analysis = import_fvcore_flops()
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            fca = flop_count_analysis(module, inputs)
            fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(fca.total())
    finally:
        module.train(was_training)


#: Leaf layers fvcore does not count (elementwise activations and identities; fvcore's ignored ops).
_FREE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Identity, nn.Dropout, nn.MaxPool2d,
         nn.AvgPool2d, Concat)


def _leaf_flops(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int | None:
    """fvcore's count for one leaf layer from its input and output shapes; None: no formula here."""
    if isinstance(m, nn.Conv2d):  # MACs: out elements × (C_in / groups) × kH × kW
        return y.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    if isinstance(m, nn.Linear):
        return x.numel() // x.shape[-1] * m.in_features * m.out_features
    if isinstance(m, nn.BatchNorm2d):  # eval mode: one per element, two with affine parameters
        return x.numel() * (2 if m.affine else 1)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return x.numel()
    if isinstance(m, _FREE):
        return 0
    return None


def meta_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """fvcore's FLOP count of a block module from one ``meta``-device forward pass, or None when a
    leaf layer has no formula in ``_leaf_flops`` (count it with ``fvcore_flops`` then).

    ``module`` must live on the ``meta`` device (``make_module`` under ``torch.device("meta")``).
    """
    total, unknown = [0], [False]

    def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        f = _leaf_flops(m, args[0], out)
        if f is None:
            unknown[0] = True
        else:
            total[0] += f

    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        module.eval()
        with torch.no_grad():
            module(torch.empty(input_shape, device="meta"))  # N, C, H, W
    finally:
        for h in handles:
            h.remove()
    return None if unknown[0] else total[0]


class CostCounter:
    """Counts block and architecture costs, caching each distinct block (``Block`` equality)."""

    def __init__(self) -> None:
        self._cache: dict[Block, Cost] = {}

    def block(self, block: Block) -> Cost:
        """FLOPs and parameters of one block at its input shape."""
        hit = self._cache.get(block)
        if hit is not None:
            return hit
        if op_key(block) is None:  # skip and concat: wiring, no weights or arithmetic
            cost = ZERO
        else:
            shape = (1, block.cin, block.hw, block.hw)
            with torch.device("meta"):
                module = make_module(block)
            flops = meta_flops(module, shape)
            if flops is None:
                torch.manual_seed(0)
                flops = fvcore_flops(make_module(block), torch.zeros(shape))
            cost = Cost(flops, count_params(module))
        self._cache[block] = cost
        return cost

    def blocks(self, blocks: Iterable[Block]) -> Cost:
        """Total cost of a block sequence (a whole architecture)."""
        total = ZERO
        for b in blocks:
            total = total + self.block(b)
        return total

    def __len__(self) -> int:
        return len(self._cache)
