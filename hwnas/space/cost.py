"""FLOPs and parameter counts per block and per architecture, with fvcore.

FLOPs follow fvcore's convention: one multiply-add counts once (convolutions, linear layers), plus
fvcore's counts for batch norm and adaptive pooling. Each distinct block is traced once, alone at
its input shape, and cached, so costing an architecture needs no model build; the sum over blocks
equals fvcore on the built model because the model is exactly the sequence of block modules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import torch

from hwnas.compat import import_fvcore_flops
from hwnas.space.blocks import Block
from hwnas.space.build import count_params
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


class CostCounter:
    """Counts block and architecture costs, caching each distinct block (``Block`` equality)."""

    def __init__(self) -> None:
        self._cache: dict[Block, Cost] = {}

    def block(self, block: Block) -> Cost:
        """FLOPs and parameters of one block at its input shape."""
        hit = self._cache.get(block)
        if hit is not None:
            return hit
        if block.op == "skip":
            cost = ZERO
        else:
            torch.manual_seed(0)
            module = make_module(block)
            x = torch.zeros(1, block.cin, block.hw, block.hw)
            cost = Cost(fvcore_flops(module, x), count_params(module))
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
