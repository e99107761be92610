"""The NAS-Bench-201 network for one cell (Dong & Yang, ICLR 2020, Sec. 2.1, Fig. 1).

Skeleton: a 3x3 conv stem (C channels) with BN; three stages of N cells with C, 2C and 4C
channels, joined by ResNet basic blocks of stride 2; BN, ReLU, global average pooling and a linear
classifier. Every cell of the network is the same searched cell.

Dead edges (``live_edges``) are not built and not run. When no edge of the cell is live (the output
node is unreachable from the input) the cell outputs zeros: it has no module, no parameters and no
FLOPs, and the network's latency is that of the skeleton alone. This differs from the reference
implementation, which builds every edge: its dead ``nor_conv`` edges hold parameters (removed
here), and a ``nor_conv`` fed by an all-zero node outputs its BN shift rather than zero.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hwnas.space.cells.nb201 import EDGES, NUM_NODES, check_cell_ops, live_edges
from hwnas.space.cells.ops import ReLUConvBN, make_op


def edge_key(dst: int, src: int) -> str:
    """Module name of the edge src→dst inside a cell, e.g. ``"2<-1"``."""
    return f"{dst}<-{src}"


class NB201Cell(nn.Module):
    """One NAS-Bench-201 cell: node i = Σ_{j<i} edge_{j→i}(node j) over live edges (Sec. 2.1).

    Args:
        cell_ops: 6 op names in ``EDGES`` order.
        channels: input = output channels C (ops keep the shape).
    """

    def __init__(self, *, cell_ops: Sequence[str], channels: int) -> None:
        super().__init__()
        self.cell_ops = check_cell_ops(cell_ops)
        self.live = live_edges(self.cell_ops)
        self.edges = nn.ModuleDict()
        for (dst, src), op, live in zip(EDGES, self.cell_ops, self.live):
            if live:
                self.edges[edge_key(dst, src)] = make_op(op, c_in=channels, c_out=channels, stride=1, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x]  # each N, C, H, W; None = zero (no live input)
        for node in range(1, NUM_NODES):
            total: torch.Tensor | None = None
            for (dst, src), live in zip(EDGES, self.live):
                if dst == node and live:
                    y = self.edges[edge_key(dst, src)](nodes[src])
                    total = y if total is None else total + y
            nodes.append(total)
        out = nodes[-1]
        return torch.zeros_like(x) if out is None else out


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block between stages (stride 2, c_in → c_out).

    Residual branch: ReLU-conv3x3(stride 2)-BN, ReLU-conv3x3-BN; shortcut: 2x2 average pool
    (stride 2) then a 1x1 conv without BN; the two are summed.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, kernel=3, stride=2, padding=1, affine=True)
        self.conv_b = ReLUConvBN(c_out, c_out, kernel=3, stride=1, padding=1, affine=True)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)  # N, C_out, H/2, W/2


class NB201Net(nn.Module):
    """The NAS-Bench-201 CIFAR network of one cell; ``forward`` returns logits (N, classes).

    Args:
        cell_ops: 6 op names in ``EDGES`` order (``parse_nb201`` of a cell string).
        channels: stem and first-stage channels C (stages: C, 2C, 4C).
        cells_per_stage: N cells per stage.
        num_classes: classifier outputs.

    Raises:
        InputError: for a malformed ``cell_ops``.
    """

    def __init__(
        self, *, cell_ops: Sequence[str], channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.cell_ops = check_cell_ops(cell_ops)
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c_prev = channels
        for stage in range(3):
            c = channels * 2**stage
            if stage > 0:
                layers.append(ResNetBasicBlock(c_prev, c))
            layers.extend(NB201Cell(cell_ops=self.cell_ops, channels=c) for _ in range(cells_per_stage))
            c_prev = c
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # N, C, H, W
        for layer in self.cells:
            x = layer(x)  # N, 4C, H/4, W/4 after the last stage
        x = self.pool(self.lastact(x)).flatten(1)  # N, 4C
        return self.classifier(x)  # N, classes
