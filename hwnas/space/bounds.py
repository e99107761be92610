"""Exact minimum of a sum of small dense terms over categorical decisions (min-sum elimination).

An architecture's predicted cost is ``const + Σ_t array_t[indices[decisions_t]]`` (see
``hwnas.latency.batch``). Its minimum over all architectures is found exactly by eliminating one
decision at a time (always the one whose elimination makes the smallest new table), the classic
variable-elimination algorithm for min-sum problems; back-tracking recovers an argmin. Spaces are
chains of stages, so the tables stay small. Used to tell a user the smallest achievable latency when
a budget is infeasible.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Term = tuple[tuple[int, ...], np.ndarray]


def _expand(arr: np.ndarray, have: tuple[int, ...], want: tuple[int, ...]) -> np.ndarray:
    """Broadcastable view of ``arr`` (axes ``have``) on the axes ``want`` (a superset, sorted)."""
    perm = sorted(range(len(have)), key=lambda i: want.index(have[i]))
    a = np.transpose(arr, perm) if have else np.asarray(arr)
    shape = [1] * len(want)
    for ax, v in enumerate(sorted(have, key=want.index)):
        shape[want.index(v)] = a.shape[ax]
    return a.reshape(shape)


def minimize(terms: Sequence[Term], num_options: Sequence[int], *, const: float = 0.0) -> tuple[float, np.ndarray]:
    """Exact minimum of ``const + Σ_t terms[t].array[x[terms[t].decisions]]`` over option indices x.

    Args:
        terms: ``(decisions, array)`` pairs; ``array.shape == [num_options[d] for d in decisions]``.
        num_options: Options per decision.
        const: Constant part.

    Returns:
        The minimum and one argmin (option indices, shape (len(num_options),)).
    """
    factors: list[Term] = [(tuple(d), np.asarray(a, dtype=np.float64)) for d, a in terms]
    trace: list[tuple[int, tuple[int, ...], np.ndarray]] = []  # (var, other vars, argmin table)
    remaining = {v for d, _ in factors for v in d}
    while remaining:
        def cost(v: int) -> int:
            scope = {u for d, _ in factors if v in d for u in d} - {v}
            return int(np.prod([num_options[u] for u in scope])) if scope else 1

        v = min(sorted(remaining), key=cost)
        involved = [f for f in factors if v in f[0]]
        factors = [f for f in factors if v not in f[0]]
        scope = tuple(sorted({u for d, _ in involved for u in d}))
        total = sum(_expand(a, d, scope) for d, a in involved)
        total = np.broadcast_to(total, tuple(num_options[u] for u in scope))
        axis = scope.index(v)
        others = tuple(u for u in scope if u != v)
        trace.append((v, others, np.argmin(total, axis=axis)))
        factors.append((others, np.min(total, axis=axis)))
        remaining.discard(v)
    best = const + float(sum(float(a) for d, a in factors if not d))
    x = np.zeros(len(num_options), dtype=np.int64)
    for v, others, arg in reversed(trace):
        x[v] = int(arg[tuple(x[u] for u in others)]) if others else int(arg)
    return best, x
