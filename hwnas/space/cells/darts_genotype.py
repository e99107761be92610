"""DARTS cell genotypes: the derived normal and reduction cells, their dead edges, and presets.

A DARTS convolutional cell (Liu et al., ICLR 2019, Sec. 2.1) has two input nodes (0: the output of
the cell two back, 1: of the previous cell), ``steps`` intermediate nodes 2..steps+1 and an output
that concatenates the intermediate nodes listed in ``concat``. The derived cell keeps two inputs per
intermediate node, from distinct predecessors (Sec. 2.4), so a cell is written, as in the DARTS
release, as a flat list of (op, input node) pairs, two per intermediate node in node order.

Presets: ``DARTS_V1`` (first-order) and ``DARTS_V2`` (second-order), the cells of Liu et al.,
2019, Fig. 4 and 5, as released in the DARTS repository's ``genotypes.py``. NASP's cells (Yao et
al., AAAI 2020, Appendix B.4, Fig. 5 and 6) are printed only as figures, not as text, in
``papers/nasp.txt``, so there is no NASP preset here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Sequence

from hwnas.errors import InputError

#: The candidate ops of the DARTS CNN space, in the release's order (Sec. 3.1.1).
DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: Number of cell input nodes (outputs of the two previous cells).
NUM_INPUTS = 2
#: Inputs kept per intermediate node in a derived cell (Sec. 2.4).
INPUTS_PER_NODE = 2

Pair = tuple[str, int]


def _check_cell(
    kind: str, pairs: Sequence[Sequence[object]], concat: Sequence[int]
) -> tuple[tuple[Pair, ...], tuple[int, ...]]:
    """``pairs`` and ``concat`` as tuples after checking them (``InputError`` naming the problem)."""
    if isinstance(pairs, str) or len(pairs) == 0 or len(pairs) % INPUTS_PER_NODE:
        raise InputError(f"the {kind} cell needs a non-empty, even-length list of (op, input) pairs, got {pairs!r}")
    cell: list[Pair] = []
    for k, pair in enumerate(pairs):
        node = NUM_INPUTS + k // INPUTS_PER_NODE
        if isinstance(pair, str) or len(pair) != 2:
            raise InputError(f"entry {k} of the {kind} cell must be an (op, input node) pair, got {pair!r}")
        op, src = pair
        if op not in DARTS_OPS:
            raise InputError(f"unknown op {op!r} in the {kind} cell; expected one of {', '.join(DARTS_OPS)}")
        if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < node:
            raise InputError(
                f"entry {k} of the {kind} cell feeds node {node} from {src!r}, which must be a node in 0..{node - 1}"
            )
        cell.append((op, src))
    for k in range(0, len(cell), INPUTS_PER_NODE):
        srcs = [src for _, src in cell[k : k + INPUTS_PER_NODE]]
        if len(set(srcs)) != len(srcs):
            node = NUM_INPUTS + k // INPUTS_PER_NODE
            raise InputError(
                f"node {node} of the {kind} cell takes input {srcs[0]} twice; a derived cell's inputs are distinct"
            )
    last = NUM_INPUTS + len(cell) // INPUTS_PER_NODE
    if isinstance(concat, str) or len(concat) == 0:
        raise InputError(f"the {kind} cell's concat must list intermediate nodes, got {concat!r}")
    for node in concat:
        if isinstance(node, bool) or not isinstance(node, int) or not NUM_INPUTS <= node < last:
            raise InputError(
                f"the {kind} cell's concat lists {node!r}, which is not an intermediate node {NUM_INPUTS}..{last - 1}"
            )
    if len(set(concat)) != len(concat):
        raise InputError(f"the {kind} cell's concat lists a node twice: {list(concat)!r}")
    return tuple(cell), tuple(concat)


@dataclass(frozen=True)
class DartsGenotype:
    """A derived DARTS architecture: the normal and the reduction cell.

    Attributes:
        normal: (op, input node) pairs of the normal cell, two per intermediate node.
        reduce: the same for the reduction cell (edges from nodes 0 and 1 have stride 2).
        normal_concat: intermediate nodes concatenated into the normal cell's output.
        reduce_concat: the same for the reduction cell.

    Raises:
        InputError: for an unknown op, an input that is not an earlier node, repeated inputs of one
            node, or a concat that does not list distinct intermediate nodes.
    """

    normal: tuple[Pair, ...]
    reduce: tuple[Pair, ...]
    normal_concat: tuple[int, ...] = (2, 3, 4, 5)
    reduce_concat: tuple[int, ...] = (2, 3, 4, 5)

    def __post_init__(self) -> None:
        normal, normal_concat = _check_cell("normal", self.normal, self.normal_concat)
        reduce, reduce_concat = _check_cell("reduction", self.reduce, self.reduce_concat)
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "normal_concat", normal_concat)
        object.__setattr__(self, "reduce", reduce)
        object.__setattr__(self, "reduce_concat", reduce_concat)


def darts_live_edges(pairs: Sequence[Pair], concat: Sequence[int]) -> tuple[bool, ...]:
    """Which edges of a (checked) DARTS cell carry signal from the cell inputs to its output.

    The inputs (nodes 0, 1) are always present. An edge is live iff its op is not ``none``, its
    source is an input or an intermediate node with a live input, and its destination is in
    ``concat`` or feeds, through non-``none`` edges, a node that is.

    Returns:
        One flag per pair, in ``pairs`` order.
    """
    num_nodes = NUM_INPUTS + len(pairs) // INPUTS_PER_NODE
    dst = [NUM_INPUTS + k // INPUTS_PER_NODE for k in range(len(pairs))]
    on = [op != "none" for op, _ in pairs]
    present = [True] * NUM_INPUTS + [False] * (num_nodes - NUM_INPUTS)
    for k, (_, src) in enumerate(pairs):  # pairs come in destination order
        present[dst[k]] = present[dst[k]] or (on[k] and present[src])
    used = [node in concat for node in range(num_nodes)]
    for k in reversed(range(len(pairs))):
        src = pairs[k][1]
        used[src] = used[src] or (on[k] and used[dst[k]])
    return tuple(on[k] and present[src] and used[dst[k]] for k, (_, src) in enumerate(pairs))


#: DARTS (first order), Liu et al., 2019, Table 1; cells as released in DARTS's genotypes.py.
DARTS_V1 = DartsGenotype(
    normal=(
        ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),  # node 2
        ("skip_connect", 0), ("sep_conv_3x3", 1),  # node 3
        ("skip_connect", 0), ("sep_conv_3x3", 1),  # node 4
        ("sep_conv_3x3", 0), ("skip_connect", 2),  # node 5
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),  # node 2
        ("skip_connect", 2), ("max_pool_3x3", 0),  # node 3
        ("max_pool_3x3", 0), ("skip_connect", 2),  # node 4
        ("skip_connect", 2), ("avg_pool_3x3", 0),  # node 5
    ),
)  # fmt: skip

#: DARTS (second order), Liu et al., 2019, Fig. 4 (normal) and Fig. 5 (reduction); 3.3M params.
DARTS_V2 = DartsGenotype(
    normal=(
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),  # node 2
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),  # node 3
        ("sep_conv_3x3", 1), ("skip_connect", 0),  # node 4
        ("skip_connect", 0), ("dil_conv_3x3", 2),  # node 5
    ),
    reduce=(
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),  # node 2
        ("skip_connect", 2), ("max_pool_3x3", 1),  # node 3
        ("max_pool_3x3", 0), ("skip_connect", 2),  # node 4
        ("skip_connect", 2), ("max_pool_3x3", 1),  # node 5
    ),
)  # fmt: skip

#: Presets by name (read-only).
DARTS_PRESETS: Mapping[str, DartsGenotype] = MappingProxyType({"darts_v1": DARTS_V1, "darts_v2": DARTS_V2})
