"""The DARTS CIFAR evaluation network of a genotype (Liu et al., ICLR 2019, Sec. 3.2, Appendix A.2).

Skeleton: a 3x3 conv stem to 3C channels with BN; ``layers`` cells, the ones at ``layers // 3`` and
``2 * layers // 3`` being reduction cells that halve H and W and double the channels; global
average pooling and a linear classifier (the evaluation network has no BN-ReLU before pooling).
Cell k reads the outputs of cells k-2 and k-1, preprocessed to C channels by a 1x1 ``ReLUConvBN``,
or by ``FactorizedReduce`` for cell k-2 when cell k-1 was a reduction; its output concatenates the
intermediate nodes (4C channels for the usual 4 nodes).

For inference only: no auxiliary head and no drop-path (both are training devices, Sec. 3.2).
Dead edges (``darts_live_edges``; e.g. a ``none`` op, which never occurs in a derived genotype)
are not built and not run; an intermediate node without a live input is zero, and a preprocessing
layer no live edge reads is not built either.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hwnas.space.cells.darts_genotype import (
    DARTS_V1,
    DARTS_V2,
    INPUTS_PER_NODE,
    NUM_INPUTS,
    DartsGenotype,
    Pair,
    darts_live_edges,
)
from hwnas.space.cells.ops import FactorizedReduce, ReLUConvBN, make_op

__all__ = ["DARTS_V1", "DARTS_V2", "DartsCell", "DartsNet"]

#: Stem channels are this multiple of C (Appendix A.2).
STEM_MULTIPLIER = 3


class DartsCell(nn.Module):
    """One DARTS cell: node i = Σ over its live (op, j) pairs of op(node j); output = concat (Sec. 2.1).

    Args:
        pairs: the cell's (op, input node) pairs, two per intermediate node (a checked genotype's).
        concat: intermediate nodes concatenated into the output.
        c_prev_prev: channels of input node 0 (the output of the cell two back).
        c_prev: channels of input node 1 (the previous cell's output).
        channels: C, the channels of every node.
        reduction: whether the edges from nodes 0 and 1 have stride 2.
        reduction_prev: whether the previous cell reduced (node 0 is then at twice the size).
        affine: whether the batch norms learn scale and shift (True in evaluation networks).
    """

    def __init__(
        self,
        *,
        pairs: Sequence[Pair],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.pairs = tuple(pairs)
        self.concat = tuple(concat)
        self.channels = channels
        self.stride = 2 if reduction else 1
        self.live = darts_live_edges(self.pairs, self.concat)
        read = {src for (_, src), live in zip(self.pairs, self.live) if live}
        self.preprocess0: nn.Module | None = None
        self.preprocess1: nn.Module | None = None
        if 0 in read:
            self.preprocess0 = (
                FactorizedReduce(c_prev_prev, channels, affine=affine)
                if reduction_prev
                else ReLUConvBN(c_prev_prev, channels, kernel=1, stride=1, padding=0, affine=affine)
            )
        if 1 in read:
            self.preprocess1 = ReLUConvBN(c_prev, channels, kernel=1, stride=1, padding=0, affine=affine)
        self.edges = nn.ModuleDict()
        for k, ((op, src), live) in enumerate(zip(self.pairs, self.live)):
            if live:
                stride = self.stride if src < NUM_INPUTS else 1
                self.edges[self._key(k)] = make_op(op, c_in=channels, c_out=channels, stride=stride, affine=affine)

    def _key(self, k: int) -> str:
        """Module name of pair k, e.g. ``"3<-1"`` (inputs of one node are distinct)."""
        return f"{NUM_INPUTS + k // INPUTS_PER_NODE}<-{self.pairs[k][1]}"

    @property
    def multiplier(self) -> int:
        """Output channels / C."""
        return len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        n, _, h, w = s1.shape  # N, C_prev, H, W (s0: N, C_prev_prev, H or 2H, W or 2W)
        states: list[torch.Tensor | None] = [  # each N, C, H, W; None = zero
            None if self.preprocess0 is None else self.preprocess0(s0),
            None if self.preprocess1 is None else self.preprocess1(s1),
        ]
        for start in range(0, len(self.pairs), INPUTS_PER_NODE):
            total: torch.Tensor | None = None
            for k in range(start, start + INPUTS_PER_NODE):
                if self.live[k]:
                    y = self.edges[self._key(k)](states[self.pairs[k][1]])  # N, C, H/s, W/s
                    total = y if total is None else total + y
            states.append(total)
        h_out, w_out = -(-h // self.stride), -(-w // self.stride)
        outs = [
            s1.new_zeros(n, self.channels, h_out, w_out) if states[node] is None else states[node]
            for node in self.concat
        ]
        return torch.cat(outs, dim=1)  # N, multiplier * C, H/s, W/s


class DartsNet(nn.Module):
    """The DARTS CIFAR evaluation network; ``forward`` returns logits (N, classes).

    Args:
        genotype: the normal and reduction cells (e.g. ``DARTS_V2``).
        channels: C, the initial cell channels (36 in Sec. 3.2: 3.3M parameters with DARTS_V2).
        layers: number of cells (20 in Sec. 3.2).
        num_classes: classifier outputs.
    """

    def __init__(
        self, *, genotype: DartsGenotype, channels: int = 36, layers: int = 20, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.genotype = genotype
        c_stem = STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        reductions = {layers // 3, 2 * layers // 3}
        c_prev_prev, c_prev, c = c_stem, c_stem, channels
        reduction_prev = False
        cells: list[DartsCell] = []
        for index in range(layers):
            reduction = index in reductions
            if reduction:
                c *= 2
            cell = DartsCell(
                pairs=genotype.reduce if reduction else genotype.normal,
                concat=genotype.reduce_concat if reduction else genotype.normal_concat,
                c_prev_prev=c_prev_prev,
                c_prev=c_prev,
                channels=c,
                reduction=reduction,
                reduction_prev=reduction_prev,
            )
            cells.append(cell)
            c_prev_prev, c_prev, reduction_prev = c_prev, cell.multiplier * c, reduction
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)  # N, 3C, H, W
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)  # s1: N, 4C·2^r, H/2^r, W/2^r after r reductions
        return self.classifier(self.pool(s1).flatten(1))  # N, classes
