"""Blocks → ``nn.Module``: the one builder every part of hwnas uses."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hwnas.space.blocks import Block
from hwnas.space.ops import make_module
from hwnas.space.wiring import forward, is_wired


class HwnasNet(nn.Module):
    """A network as a plain sequence of block modules (``self.blocks[i]`` is ``specs[i]``).

    Chain networks pass one tensor along; cell networks route it through the blocks' registers
    (``hwnas.space.wiring``).

    Args:
        blocks: Resolved blocks from ``SearchSpace.resolve``, stem to classifier.
    """

    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        self.specs: tuple[Block, ...] = tuple(blocks)
        self.blocks = nn.ModuleList(make_module(b) for b in self.specs)
        self.wired = is_wired(self.specs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N, 3, R, R → N, classes
        return forward(self.specs, self.blocks, x, wired=self.wired)


def build_model(blocks: Sequence[Block]) -> HwnasNet:
    """Builds a freshly initialized network from resolved blocks."""
    if not blocks:
        raise ValueError("cannot build a network from an empty block list")
    return HwnasNet(blocks)


def count_params(module: nn.Module) -> int:
    """Number of parameters (every tensor in ``module.parameters()``)."""
    return sum(p.numel() for p in module.parameters())
