"""Rank-correlation metrics of a supernet's ranking against stand-alone training (pure numpy).

How far accuracies with inherited supernet weights rank architectures as stand-alone training does
is the question of "Evaluating the search phase of neural architecture search" (Yu et al., ICLR
2020, Sec. 4: Kendall tau between the two rankings) and of FairNAS (Chu et al., ICCV 2021, Fig. 1:
Kendall tau of supernet vs. stand-alone accuracy under uniform and strictly fair sampling).

* ``kendall_tau``: Kendall's tau-b, which corrects the denominator for ties in either ranking.
* ``spearman``: Spearman's rho, the Pearson correlation of average ranks (ties share their mean rank).
* ``top_k_overlap``: the share of the k best by one score that are also among the k best by the other.

Every function takes two equally long 1-D sequences of scores (higher is better) and returns a
float; a correlation that is undefined (one side constant, fewer than 2 items) is ``nan``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _pair(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"expected two 1-D sequences of the same length, got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores must be finite")
    return a, b


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b between two score vectors.

    ``tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2))`` with C / D the concordant / discordant pairs,
    ``n0 = n (n - 1) / 2`` and n1 / n2 the pairs tied in x / in y (Kendall, 1945). Without ties it is
    tau-a, ``(C - D) / n0``. O(n²) pairs, meant for the tens of architectures a ranking check trains.

    Args:
        x: Scores of n items (e.g. supernet accuracy).
        y: Scores of the same items (e.g. stand-alone accuracy).

    Returns:
        tau-b in [-1, 1]; ``nan`` when n < 2 or either side is constant.
    """
    a, b = _pair(x, y)
    i, j = np.triu_indices(a.size, k=1)  # every pair once
    sx, sy = np.sign(a[j] - a[i]), np.sign(b[j] - b[i])
    untied_x, untied_y = np.abs(sx).sum(), np.abs(sy).sum()  # n0 - n1, n0 - n2
    if untied_x == 0 or untied_y == 0:
        return float("nan")
    return float((sx * sy).sum() / np.sqrt(untied_x * untied_y))


def average_ranks(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n in ascending order of ``x``; tied values share the mean of their ranks."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(1, a.size + 1, dtype=np.float64)
    values, inverse = np.unique(a, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks, minlength=values.size)
    counts = np.bincount(inverse, minlength=values.size)
    return sums[inverse] / counts[inverse]


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation rho: Pearson's r of the average ranks of x and y.

    Without ties it equals ``1 - 6 Σ d² / (n (n² - 1))``, d the rank differences.

    Returns:
        rho in [-1, 1]; ``nan`` when n < 2 or either side is constant.
    """
    a, b = _pair(x, y)
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if a.size < 2 or denom == 0:
        return float("nan")
    return float(np.clip((ra * rb).sum() / denom, -1.0, 1.0))


def top_k(x: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores; equal scores are taken in index order."""
    a = np.asarray(x, dtype=np.float64)
    return np.argsort(-a, kind="mergesort")[:k]


def top_k_overlap(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *, k: int = 5) -> float:
    """``|top-k by x ∩ top-k by y| / k'`` with ``k' = min(k, n)`` (1.0: the same k best).

    Args:
        x: Scores of n ≥ 1 items.
        y: Scores of the same items.
        k: How many of the best to compare (k ≥ 1).
    """
    a, b = _pair(x, y)
    if k < 1 or a.size == 0:
        raise ValueError(f"need k >= 1 and at least one item, got k={k}, n={a.size}")
    kk = min(k, a.size)
    return len(set(top_k(a, kk).tolist()) & set(top_k(b, kk).tolist())) / kk
