"""Which architectures to time when a latency model is fitted from whole-model timings.

A fit learns per-op costs from sums over blocks, so its sample must (a) span the latency range,
or the fit extrapolates at the ends the search cares about (the budget is usually near the fast
end), and (b) contain every op option, or that option's cost is not determined. ``informative_archs``
draws a pool of random architectures, sorts it by a predicted cost (a table's latency, else FLOPs),
cuts it into ``n`` strata of equal count and takes from each stratum the arch that adds the most
(decision, option) pairs not yet covered: stratified sampling (Cochran, *Sampling Techniques*,
1977, Ch. 5) with a greedy set cover inside each stratum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.space import ArchSettings

#: Stream id of the pool (``np.random.default_rng([seed, stream])``), apart from validation's.
POOL_STREAM = 2
#: Pool size per requested architecture (at least ``MIN_POOL``).
POOL_PER_ARCH, MIN_POOL = 20, 2000


@dataclass(frozen=True)
class Selection:
    """Picked architectures and what they cover.

    Attributes:
        archs: Canonical archs, in stratum order (cheapest first).
        cost: The predicted cost of each (``cost_name``).
        cost_name: ``latency_ms`` (from a table) or ``flops``.
        uncovered: ``decision=option`` pairs that no picked arch uses (empty when all are covered).
    """

    archs: list[dict[str, Any]]
    cost: list[float]
    cost_name: str
    uncovered: list[str]


def option_pairs(space, arch: dict[str, Any]) -> set[tuple[int, int]]:
    """The (decision, option) index pairs of an arch's active decisions (those that change its network)."""
    active = space.active_decisions(arch)
    idx = space.encode(arch)
    return {(i, int(idx[i])) for i, d in enumerate(space.decisions) if d.name in active}


def informative_archs(space, *, n: int, seed: int, settings: ArchSettings,
                      cost: Callable[[Sequence[dict[str, Any]]], np.ndarray], cost_name: str,
                      pool: int | None = None) -> Selection:
    """``n`` distinct archs stratified over ``cost`` and covering as many op options as they can.

    Args:
        space: The search space.
        n: How many to pick.
        seed: Seeds the pool and the tie breaks.
        settings: Resolution, width multiplier and classes of the archs.
        cost: Predicted cost of archs (e.g. ``BatchPredictor.latency`` of their indices), shape (N,).
        cost_name: What ``cost`` is, for the report.
        pool: Random archs to pick from (default ``max(MIN_POOL, POOL_PER_ARCH * n)``, capped by the space).

    Raises:
        InputError: for ``n`` < 1 or a space with fewer distinct archs than ``n``.
    """
    from hwnas.latency.validate import sample_archs

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--archs must be a positive integer, got {n!r}.")
    size = pool or max(MIN_POOL, POOL_PER_ARCH * n)
    total = 10 ** space.size_log10()
    size = int(min(size, max(n, total // 2)))
    cands = sample_archs(space, n=size, seed=seed, stream=POOL_STREAM, settings=settings)
    c = np.asarray(cost(cands), dtype=np.float64)
    order = np.argsort(c, kind="stable")
    rng = np.random.default_rng([seed, POOL_STREAM, 1])
    pairs = [option_pairs(space, a) for a in cands]
    covered: set[tuple[int, int]] = set()
    picked: list[int] = []
    for stratum in np.array_split(order, n):
        gain = np.array([len(pairs[i] - covered) for i in stratum])
        best = stratum[gain == gain.max()]
        i = int(rng.choice(best))
        picked.append(i)
        covered |= pairs[i]
    every = {(i, j) for i, d in enumerate(space.decisions) for j in range(len(d.options))}
    missing = sorted(every - covered - _never_active(space, cands, pairs))
    uncovered = [f"{space.decisions[i].name}={space.decisions[i].options[j]}" for i, j in missing]
    return Selection(archs=[cands[i] for i in picked], cost=[float(c[i]) for i in picked], cost_name=cost_name,
                     uncovered=uncovered)


def _never_active(space, cands: Sequence[dict[str, Any]], pairs: Sequence[set]) -> set[tuple[int, int]]:
    """Pairs no arch of the pool uses actively (e.g. options of a cell edge that is always dead): no
    measurement can show them, so they are not counted as uncovered."""
    seen: set[tuple[int, int]] = set().union(*pairs) if pairs else set()
    every = {(i, j) for i, d in enumerate(space.decisions) for j in range(len(d.options))}
    return every - seen
