"""DARTS's continuous relaxation of a DARTS-topology cell space, run on the shared supernet.

The ``darts`` space's decisions are a discrete genotype: per cell type and intermediate node, a pair
of inputs and an op for each (``hwnas.space.cells.cell_spec``). DARTS (Liu et al., ICLR 2019) searches
a relaxation of it instead (Sec. 2.1): every intermediate node j of a cell takes *all* earlier nodes
i < j as inputs, 2 + 3 + 4 + 5 = 14 edges, and every edge (i, j) computes the mixed op of Eq. 2,

    ō_(i,j)(x_i) = Σ_o w_(i,j),o · o(x_i),     x_j = Σ_{i<j} ō_(i,j)(x_i)     (Eq. 1),

over all candidate ops, DARTS's zero op ``none`` included (it contributes nothing). The weights are
shared by every cell of one type (normal or reduction), so the relaxation has 2 × 14 edges.

``CellEdgeRelaxation`` runs Eq. 1-2 on the modules the supernet already holds: the supernet keeps
one module per (cell, source node, destination node, op) (``SuperNet``'s cell edges), which is
exactly the set of the relaxation's candidates. Nothing is built twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch

from hwnas.space.cells.cell_spec import CELL_TYPES
from hwnas.space.cells.derive import RELAXED_EDGES
from hwnas.space.wiring import Registers
from hwnas.supernet.supernet import Step, SuperNet

#: DARTS's zero op (Sec. 2.1): a candidate of every relaxed edge, never of a derived cell.
NONE = "none"


def _node(register: str) -> tuple[str, int]:
    """``"c3.n4"`` → (``"c3"``, 4): the cell and node of a cell register."""
    cell, _, node = register.rpartition(".n")
    return cell, int(node)


@dataclass(frozen=True)
class RelaxedEdge:
    """One edge (i → j) of one cell: its row of weights and the step of each relaxed op.

    Attributes:
        row: Index of the edge's weight vector (``cell type × 14 + RELAXED_EDGES`` position).
        steps: Per relaxed op (``CellEdgeRelaxation.ops`` order), the supernet step that computes it;
            None for ``none``.
    """

    row: int
    steps: tuple[Step | None, ...]


class CellEdgeRelaxation:
    """The 14-edge relaxation of every cell of a ``darts``-topology supernet (Liu et al. 2019, Eq. 1-2).

    Args:
        supernet: A supernet of a cell space with ``topology: "darts"``.

    Attributes:
        ops: The relaxed candidate ops: ``none`` first, then the space's ops.
        rows: One label per weight vector, ``"normal.3<-1"`` (cell type, destination <- source).

    Raises:
        ValueError: for a supernet of another kind of space.
    """

    def __init__(self, supernet: SuperNet) -> None:
        space = supernet.space
        if space.kind != "cell" or getattr(space.spec, "topology", None) != "darts":
            raise ValueError(f"space {space.name} is not a DARTS-topology cell space")
        self.supernet = supernet
        self.ops: tuple[str, ...] = (NONE,) + tuple(o for o in space.spec.ops if o != NONE)
        self.rows: tuple[str, ...] = tuple(f"{ct}.{j}<-{i}" for ct in CELL_TYPES for j, i in RELAXED_EDGES)
        index = {d.name: i for i, d in enumerate(space.decisions)}
        # (inputs decision, op decision) → (cell type, node, which input of the pair)
        self._sides: dict[tuple[int, int], tuple[str, int, int]] = {}
        for ct in CELL_TYPES:
            for j in sorted({j for j, _ in RELAXED_EDGES}):
                for pos, side in enumerate(("op_a", "op_b")):
                    self._sides[(index[f"{ct}.{j}.inputs"], index[f"{ct}.{j}.{side}"])] = (ct, j, pos)
        # the network as fixed steps and whole relaxed cells, in order
        self._program: list[Step | str | None] = []
        edges: dict[str, dict[tuple[int, int], dict[str, Step]]] = {}  # cell → (j, i) → op → step
        cell_type: dict[str, str] = {}
        for si, slot in enumerate(supernet.slots):
            plan = supernet.slot_steps(si)
            if not slot.decisions:
                self._program.append(plan[()])
                continue
            ct = self._sides[tuple(slot.decisions)][0]
            for (pair, op), step in plan.items():
                if step is None:
                    continue
                cell, j = _node(step.block.dst)
                src = self.source(decisions=tuple(slot.decisions), pair=pair)
                if cell not in edges:
                    edges[cell] = {}
                    cell_type[cell] = ct
                    self._program.append(cell)
                edges[cell].setdefault((j, src), {})[space.spec.ops[op]] = step
        self._cells: dict[str, tuple[RelaxedEdge, ...]] = {}
        for cell, by_edge in edges.items():
            base = CELL_TYPES.index(cell_type[cell]) * len(RELAXED_EDGES)
            self._cells[cell] = tuple(
                RelaxedEdge(row=base + e, steps=tuple(by_edge[(j, i)].get(o) for o in self.ops))
                for e, (j, i) in enumerate(RELAXED_EDGES))

    def source(self, *, decisions: tuple[int, ...], pair: int) -> int:
        """The source node of an op slot of the space, given its (inputs, op) decisions and the pair option."""
        _, _, pos = self._sides[decisions]
        return int(self.supernet.space.decisions[decisions[0]].options[pair].split(",")[pos])

    def row(self, *, decisions: tuple[int, ...], pair: int) -> int:
        """The weight row of the edge that an op slot's (inputs, op) decisions take at pair option ``pair``."""
        ct, j, _ = self._sides[decisions]
        i = self.source(decisions=decisions, pair=pair)
        return CELL_TYPES.index(ct) * len(RELAXED_EDGES) + RELAXED_EDGES.index((j, i))

    @property
    def num_options(self) -> tuple[int, ...]:
        """Options per weight vector: ``len(ops)`` for each of the 2 × 14 edges."""
        return (len(self.ops),) * len(self.rows)

    def steps(self) -> list[Step]:
        """Every step the relaxation runs: the skeleton's and every candidate of every edge of every cell."""
        out = []
        for item in self._program:
            if isinstance(item, str):
                out += [s for e in self._cells[item] for s in e.steps if s is not None]
            elif item is not None:
                out.append(item)
        return out

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits of the relaxed network: N, 3, R, R → N, classes.

        Args:
            x: Input images.
            weights: One vector of shape (len(ops),) per edge row (``rows``), e.g. softmax(α) (Eq. 2);
                an op whose weight is exactly 0 is not computed.
        """
        if len(weights) != len(self.rows):
            raise ValueError(f"expected {len(self.rows)} weight vectors, got {len(weights)}")
        run = self.supernet.run_step
        regs = Registers(x)
        for item in self._program:
            if item is None:
                continue
            if not isinstance(item, str):
                regs.run(item.block, functools.partial(run, item))
                continue
            for edge in self._cells[item]:  # RELAXED_EDGES order: node j is complete before j + 1 reads it
                w = weights[edge.row]
                live = torch.nonzero(w.detach() != 0).flatten().tolist()
                out, target = None, None
                for o in live:
                    step = edge.steps[o]
                    ins = None if step is None else regs.inputs(step.block)
                    if ins is None:  # none (the zero op), or a source node nothing wrote
                        continue
                    y = w[o] * run(step, *ins)
                    out, target = (y, step.block) if out is None else (out + y, target)
                if out is not None:
                    regs.write(target, out)
        return regs.x
