"""Rank metrics of the supernet ranking check, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwnas.rankstats import average_ranks, kendall_tau, spearman, top_k_overlap


def test_identical_and_reversed_rankings():
    x = [0.1, 0.5, 0.3, 0.9, 0.7]
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert spearman(x, x) == pytest.approx(1.0)
    rev = [-v for v in x]
    assert kendall_tau(x, rev) == pytest.approx(-1.0)
    assert spearman(x, rev) == pytest.approx(-1.0)


def test_one_adjacent_swap_of_five():
    # 10 pairs, 1 discordant: tau = (9 - 1) / 10 = 0.8; Σd² = 1 + 1 = 2: rho = 1 - 6·2 / (5·24) = 0.9
    x, y = [1, 2, 3, 4, 5], [1, 2, 3, 5, 4]
    assert kendall_tau(x, y) == pytest.approx(0.8)
    assert spearman(x, y) == pytest.approx(0.9)


def test_tau_b_with_ties_by_hand():
    # y ties its first two: 6 pairs, C = 5, D = 0, untied in x 6, in y 5: tau_b = 5 / sqrt(6 · 5)
    x, y = [1, 2, 3, 4], [1, 1, 2, 3]
    assert kendall_tau(x, y) == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau(x, y) != pytest.approx(5 / 6)  # tau-a would not correct for the tie
    # ties on both sides: pairs (0,3) concordant, (1,2) discordant, the other four tied: 0 / sqrt(4 · 4)
    assert kendall_tau([1, 1, 2, 2], [1, 2, 1, 2]) == pytest.approx(0.0)
    # Spearman with ties: average ranks y → [1.5, 1.5, 3, 4], Pearson with [1, 2, 3, 4]
    assert average_ranks(y).tolist() == [1.5, 1.5, 3.0, 4.0]
    assert spearman(x, y) == pytest.approx(np.corrcoef([1, 2, 3, 4], [1.5, 1.5, 3, 4])[0, 1])


def test_undefined_when_one_side_is_constant():
    assert math.isnan(kendall_tau([1, 2, 3], [0.5, 0.5, 0.5]))
    assert math.isnan(spearman([1, 2, 3], [0.5, 0.5, 0.5]))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])


def test_top_k_overlap_by_hand():
    sup = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]  # top-5: items 0..4
    alone = [0.9, 0.8, 0.1, 0.6, 0.2, 0.7, 0.65]  # top-5: items 0, 1, 5, 6, 3
    assert top_k_overlap(sup, alone) == pytest.approx(3 / 5)  # {0, 1, 3}
    assert top_k_overlap(sup, sup) == 1.0
    assert top_k_overlap([3, 2, 1], [1, 2, 3], k=1) == 0.0  # {0} vs {2}
    assert top_k_overlap([3, 2, 1], [1, 2, 3], k=2) == 0.5  # {0, 1} vs {2, 1}
    assert top_k_overlap([1, 1, 1], [1, 2, 3], k=1) == 0.0  # ties taken in index order: {0} vs {2}
    assert top_k_overlap([3, 2, 1], [1, 2, 3]) == 1.0  # n = 3 < 5: k = 3, every item is in both


def test_toy_ranking_known_from_a_monotone_proxy():
    # synthetic "stand-alone" accuracies; the "supernet" sees a monotone distortion of them, so the
    # ranking is the same (tau = rho = 1); adding an order-reversing term on half of them is measured
    rng = np.random.default_rng(0)
    alone = rng.uniform(0.5, 0.9, size=20)
    proxy = 0.3 * alone**3 - 0.1
    assert kendall_tau(proxy, alone) == pytest.approx(1.0)
    assert spearman(proxy, alone) == pytest.approx(1.0)
    assert top_k_overlap(proxy, alone) == 1.0
    order = np.argsort(alone)
    flipped = proxy.copy()
    flipped[order[:10]] = proxy[order[:10]][::-1]  # the worse half in reverse order
    # pairs within the worse half (45) become discordant, the other 145 stay concordant
    assert kendall_tau(flipped, alone) == pytest.approx((145 - 45) / 190)
    assert top_k_overlap(flipped, alone) == 1.0  # the best five are untouched
