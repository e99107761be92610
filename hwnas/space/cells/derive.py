"""DARTS's derivation of a discrete cell from the continuous relaxation (Liu et al., ICLR 2019, Sec. 2.4).

The relaxation keeps one weight vector α_(i,j) over all candidate ops (``none`` included) on every
edge i → j of a cell: 14 edges for 4 intermediate nodes. The discrete cell keeps, per intermediate
node, the k = 2 strongest incoming edges from distinct predecessors, the strength of an edge being
its largest softmax weight over the non-``none`` ops, softmax(α_(i,j))_o = exp(α_o) / Σ_o' exp(α_o');
each kept edge takes its strongest non-``none`` op. The result is written in the ``darts`` space's
decisions (``hwnas.space.cells.cell_spec.genotype_choices``).
"""

from __future__ import annotations

import numpy as np

from hwnas.space.cells.cell_spec import genotype_choices
from hwnas.space.cells.darts_genotype import DARTS_OPS, INPUTS_PER_NODE, NUM_INPUTS, DartsGenotype, Pair

#: Intermediate nodes of a DARTS cell.
STEPS = 4
#: The edges of the relaxation as (destination, source), node by node: (2,0), (2,1), (3,0), ...
RELAXED_EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(NUM_INPUTS, NUM_INPUTS + STEPS)
                                                   for i in range(j))


def _softmax(a: np.ndarray) -> np.ndarray:  # rows: edges, columns: ops
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def derive_cell(alphas: np.ndarray, *, ops: tuple[str, ...] = DARTS_OPS) -> tuple[Pair, ...]:
    """The (op, input) pairs of one derived cell, two per intermediate node (DARTS Sec. 2.4).

    Args:
        alphas: Architecture weights, shape (len(RELAXED_EDGES), len(ops)), rows in ``RELAXED_EDGES``
            order, columns in ``ops`` order.
        ops: The candidate ops; ``none`` is never kept.

    Returns:
        Pairs in node order; within a node, the stronger edge first.

    Raises:
        ValueError: for a wrong shape or no non-``none`` op.
    """
    a = np.asarray(alphas, dtype=np.float64)
    if a.shape != (len(RELAXED_EDGES), len(ops)):
        raise ValueError(f"alphas must have shape ({len(RELAXED_EDGES)}, {len(ops)}), got {a.shape}")
    keep = np.array([o != "none" for o in ops])
    if not keep.any():
        raise ValueError("derivation needs at least one op other than 'none'")
    w = _softmax(a)[:, keep]  # edges, non-none ops
    names = [o for o in ops if o != "none"]
    pairs: list[Pair] = []
    for j in range(NUM_INPUTS, NUM_INPUTS + STEPS):
        rows = [r for r, (dst, _) in enumerate(RELAXED_EDGES) if dst == j]
        best = sorted(rows, key=lambda r: (-w[r].max(), RELAXED_EDGES[r][1]))[:INPUTS_PER_NODE]
        pairs += [(names[int(w[r].argmax())], RELAXED_EDGES[r][1]) for r in best]
    return tuple(pairs)


def derive_choices(normal: np.ndarray, reduce: np.ndarray, *, ops: tuple[str, ...] = DARTS_OPS) -> dict[str, str]:
    """The ``darts`` space's choices of the cells derived from normal- and reduction-cell weights."""
    genotype = DartsGenotype(normal=derive_cell(normal, ops=ops), reduce=derive_cell(reduce, ops=ops))
    return genotype_choices(genotype)
