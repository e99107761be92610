"""How blocks connect: a network is a sequence of blocks over named registers.

A chain network passes one running tensor from block to block (register ``""``). A cell network
(NAS-Bench-201, DARTS) also keeps its nodes in named registers: a block reads its ``src`` registers
(none given: the running tensor) and adds its output into its ``dst`` register (a cell node is the
sum of its incoming edges, Dong & Yang 2020, Sec. 2.1; Liu et al. 2019, Eq. 1), or, with no ``dst``,
replaces the running tensor.

A register nothing wrote holds zeros: an edge that reads it is dead and is skipped (it would
compute a function of zeros that the pruned network does not have), and a ``concat`` block fills it
with zeros of the node's shape, so a cell whose output node has no live input outputs zeros.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch

from hwnas.space.blocks import Block


def is_wired(blocks: Sequence[Block]) -> bool:
    """True when some block reads or writes a named register (a cell network)."""
    return any(b.src or b.dst for b in blocks)


class Registers:
    """The registers of one forward pass; ``""`` is the running tensor.

    Args:
        x: The network input, N, C, H, W.
    """

    def __init__(self, x: torch.Tensor) -> None:
        self.values: dict[str, torch.Tensor] = {"": x}
        self.batch = x.shape[0]

    @property
    def x(self) -> torch.Tensor:
        """The running tensor."""
        return self.values[""]

    def inputs(self, block: Block) -> list[torch.Tensor] | None:
        """The tensors ``block`` reads, or None when it reads an unwritten register (a dead edge).

        A ``concat`` block never is dead: its unwritten inputs are zeros of its part shape
        (N, cin / len(src), hw, hw).
        """
        names = block.src or ("",)
        got = [self.values.get(n) for n in names]
        if block.op == "concat":
            part = block.cin // len(names)
            ref = next((g for g in got if g is not None), self.x)
            return [g if g is not None else ref.new_zeros(self.batch, part, block.hw, block.hw) for g in got]
        if any(g is None for g in got):
            return None
        return got  # type: ignore[return-value]

    def write(self, block: Block, y: torch.Tensor) -> None:
        """Adds ``y`` into ``block.dst`` (a node), or makes it the running tensor."""
        if block.dst and block.dst in self.values:
            self.values[block.dst] = self.values[block.dst] + y
        else:
            self.values[block.dst] = y

    def run(self, block: Block, fn: Callable[..., torch.Tensor]) -> None:
        """Runs ``fn`` on ``block``'s inputs and writes the result (nothing for a dead edge)."""
        ins = self.inputs(block)
        if ins is not None:
            self.write(block, fn(*ins))


def forward(blocks: Sequence[Block], fns: Iterable[Callable[..., torch.Tensor]], x: torch.Tensor, *,
            wired: bool) -> torch.Tensor:
    """Runs ``fns[i]`` (the computation of ``blocks[i]``) in order on the network input ``x``: each on
    the running tensor for a chain, through the registers for a cell network (``is_wired``)."""
    if not wired:
        for fn in fns:
            x = fn(x)
        return x
    regs = Registers(x)
    for block, fn in zip(blocks, fns):
        regs.run(block, fn)
    return regs.x
