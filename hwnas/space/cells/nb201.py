"""NAS-Bench-201 cell encoding: the string form, enumeration and dead-edge analysis.

A NAS-Bench-201 cell (Dong & Yang, ICLR 2020, Sec. 2.1) is a DAG of 4 nodes; node 0 is the cell
input, node 3 the cell output, and every pair j < i is joined by one edge j→i carrying one of 5 ops.
That gives 6 edges and 5**6 = 15,625 cells. The published string form lists, node by node, the
edges entering it::

    |nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|
     node 1 <- 0     node 2 <- 0, 1                  node 3 <- 0, 1, 2

Inside hwnas a cell is the tuple of its 6 op names in the canonical edge order ``EDGES``.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Sequence

from hwnas.errors import InputError

#: The candidate ops, in option order (Dong & Yang, 2020, Sec. 2.1).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: Number of nodes in a cell: input (0), two intermediate nodes, output (3).
NUM_NODES = 4
#: The 6 edges as (destination, source), in the order of the string form.
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(1, NUM_NODES) for j in range(i))
#: Number of distinct cells, 5**6.
NUM_CELLS = len(NB201_OPS) ** len(EDGES)


def check_cell_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """``ops`` as a tuple after checking its length and names (``InputError`` otherwise)."""
    if isinstance(ops, str) or len(ops) != len(EDGES):
        raise InputError(f"a NAS-Bench-201 cell needs {len(EDGES)} op names (one per edge), got {ops!r}")
    for k, op in enumerate(ops):
        if op not in NB201_OPS:
            i, j = EDGES[k]
            raise InputError(
                f"unknown NAS-Bench-201 op {op!r} on edge {j}->{i}; expected one of {', '.join(NB201_OPS)}"
            )
    return tuple(ops)


def parse_nb201(s: str) -> tuple[str, ...]:
    """Parses a NAS-Bench-201 cell string into its 6 ops in the canonical edge order ``EDGES``.

    Every edge must be listed exactly once (edges are not implied ``none``); within one node the
    edges may come in any order. Surrounding white space is ignored.

    Args:
        s: e.g. ``"|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|avg_pool_3x3~2|"``.

    Returns:
        The ops of edges (1,0), (2,0), (2,1), (3,0), (3,1), (3,2) as (destination, source).

    Raises:
        InputError: one sentence naming what is wrong with ``s``.
    """
    if not isinstance(s, str):
        raise InputError(f"a NAS-Bench-201 cell string must be a string, got {type(s).__name__}")
    text = s.strip()
    groups = text.split("+")
    if len(groups) != NUM_NODES - 1:
        raise InputError(
            f"NAS-Bench-201 cell string {s!r} has {len(groups)} '+'-separated node groups, "
            f"expected {NUM_NODES - 1}"
        )
    ops: dict[tuple[int, int], str] = {}
    for node, group in enumerate(groups, start=1):
        if len(group) < 2 or not group.startswith("|") or not group.endswith("|"):
            raise InputError(
                f"node {node} of NAS-Bench-201 cell string {s!r} must be written |op~j|...|, got {group!r}"
            )
        entries = group[1:-1].split("|")
        if len(entries) != node:
            raise InputError(
                f"node {node} of NAS-Bench-201 cell string {s!r} lists {len(entries)} edges, "
                f"expected {node} (one from each of nodes 0..{node - 1})"
            )
        for entry in entries:
            op, sep, src = entry.partition("~")
            if not sep or "~" in src:
                raise InputError(f"edge {entry!r} of NAS-Bench-201 cell string {s!r} is not of the form op~j")
            if op not in NB201_OPS:
                raise InputError(
                    f"unknown op {op!r} in NAS-Bench-201 cell string {s!r}; expected one of {', '.join(NB201_OPS)}"
                )
            if not (src.isascii() and src.isdigit()):
                raise InputError(f"edge {entry!r} of NAS-Bench-201 cell string {s!r} has a non-integer source node")
            j = int(src)
            if j >= node:
                raise InputError(
                    f"edge {entry!r} of NAS-Bench-201 cell string {s!r} enters node {node} from node {j}, "
                    f"but sources must be below {node}"
                )
            if (node, j) in ops:
                raise InputError(f"NAS-Bench-201 cell string {s!r} lists edge {j}->{node} twice")
            ops[(node, j)] = op
    return tuple(ops[e] for e in EDGES)


def format_nb201(ops: Sequence[str]) -> str:
    """The NAS-Bench-201 string of a cell (inverse of ``parse_nb201``).

    Args:
        ops: 6 op names in the canonical edge order ``EDGES``.

    Raises:
        InputError: for a wrong number of ops or an unknown op name.
    """
    cell = check_cell_ops(ops)
    groups = []
    for node in range(1, NUM_NODES):
        entries = [f"{cell[k]}~{j}" for k, (i, j) in enumerate(EDGES) if i == node]
        groups.append("|" + "|".join(entries) + "|")
    return "+".join(groups)


def all_cells() -> Iterator[tuple[str, ...]]:
    """Every one of the 15,625 cells, as op tuples in ``EDGES`` order.

    Order: lexicographic in option order (``NB201_OPS``), edge (1,0) varying slowest.
    """
    return itertools.product(NB201_OPS, repeat=len(EDGES))


def live_edges(ops: Sequence[str]) -> tuple[bool, ...]:
    """Which edges carry signal from the cell input (node 0) to its output (node 3).

    An edge j→i is live iff its op is not ``none``, node j is reachable from node 0 through
    non-``none`` edges, and node 3 is reachable from node i through non-``none`` edges. A dead edge
    contributes nothing to the output, so networks build no module for it (DESIGN: cell spaces).

    Args:
        ops: 6 op names in the canonical edge order ``EDGES``.

    Returns:
        One flag per edge, in ``EDGES`` order.

    Raises:
        InputError: for a wrong number of ops or an unknown op name.
    """
    cell = check_cell_ops(ops)
    on = [op != "none" for op in cell]
    from_input = [True] + [False] * (NUM_NODES - 1)
    for k, (i, j) in enumerate(EDGES):  # sources come before destinations in EDGES order
        from_input[i] = from_input[i] or (on[k] and from_input[j])
    to_output = [False] * (NUM_NODES - 1) + [True]
    for k in reversed(range(len(EDGES))):  # destinations are settled before their sources
        i, j = EDGES[k]
        to_output[j] = to_output[j] or (on[k] and to_output[i])
    return tuple(on[k] and from_input[j] and to_output[i] for k, (i, j) in enumerate(EDGES))
