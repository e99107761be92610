"""ProxylessNAS binary gates, BinaryConnect gradient, rescaling and latency losses (decision-level math)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from hwnas.errors import InputError
from hwnas.search.objective import proxyless_add_loss, proxyless_mul_factor, proxyless_mul_loss
from hwnas.supernet.binary_gates import (binary_connect_grad, log_prob, one_hot_gates, rescale_pair, sample_path,
                                         sample_two_paths)

P = np.array([0.5, 0.3, 0.15, 0.05])
N = 20_000


def _alpha(p: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.log(p) + 0.7, dtype=torch.float32)  # softmax is shift-invariant


def test_weight_step_gates_follow_softmax_alpha():
    rng = np.random.default_rng(0)
    alphas = [_alpha(P), torch.zeros(3)]
    draws = np.stack([sample_path(alphas, rng) for _ in range(N)])
    counts = np.bincount(draws[:, 0], minlength=4)
    assert chisquare(counts, N * P).pvalue > 1e-3
    assert chisquare(np.bincount(draws[:, 1], minlength=3), [N / 3] * 3).pvalue > 1e-3
    # the test has power: frequencies of a uniform sampler are rejected
    assert chisquare(np.full(4, N / 4), N * P).pvalue < 1e-6


def test_two_path_sampling_matches_the_hand_derived_distributions():
    """Pair {i, j} drawn without replacement: P = p_i p_j (1/(1-p_i) + 1/(1-p_j)); active among the
    pair with the renormalized p_i / (p_i + p_j)."""
    rng = np.random.default_rng(1)
    alphas = [_alpha(P)]
    pairs, active = {}, np.zeros(4)
    for _ in range(N):
        tp = sample_two_paths(alphas, rng)
        a, b = int(tp.active[0]), int(tp.inactive[0])
        assert a != b
        key = (min(a, b), max(a, b))
        pairs[key] = pairs.get(key, 0) + 1
        active[a] += 1
    keys = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    p_pair = np.array([P[i] * P[j] * (1 / (1 - P[i]) + 1 / (1 - P[j])) for i, j in keys])
    assert p_pair.sum() == pytest.approx(1.0)
    assert chisquare([pairs.get(k, 0) for k in keys], N * p_pair).pvalue > 1e-3
    p_act = np.zeros(4)
    for (i, j), pij in zip(keys, p_pair):
        p_act[i] += pij * P[i] / (P[i] + P[j])
        p_act[j] += pij * P[j] / (P[i] + P[j])
    assert chisquare(active, N * p_act).pvalue > 1e-3
    assert chisquare(active, N * P).pvalue < 1e-6  # the active marginal is NOT softmax(α): the test can tell


def test_single_option_decision_has_one_path_and_no_gradient():
    tp = sample_two_paths([torch.zeros(1), torch.zeros(2)], np.random.default_rng(0))
    assert tp.pair(0) == [0] and len(tp.pair(1)) == 2
    assert torch.equal(binary_connect_grad(torch.tensor([5.0]), torch.zeros(1), [0]), torch.zeros(1))


def test_binary_connect_gradient_of_a_toy_layer_equals_the_hand_derivation():
    """Toy layer out = Σ_o g_o c_o x with c = (1, 2, 3), x = 1, L = out² / 2, active option 2,
    inactive 0: ∂L/∂g = out · c = (3, 6, 9). With p̃ = softmax(α_2, α_0) = softmax(0.5, 0.2):
    ∂L/∂α_2 = p̃_2 p̃_0 (G_2 − G_0) = 6 e^0.7 / (e^0.5 + e^0.2)² = 1.46675,
    ∂L/∂α_0 = −1.46675, ∂L/∂α_1 = 0."""
    alpha = torch.tensor([0.2, -0.1, 0.5])
    gates = one_hot_gates(np.array([2]), [3])
    c = torch.tensor([1.0, 2.0, 3.0])
    out = (gates[0] * c * 1.0).sum()
    (0.5 * out**2).backward()
    assert gates[0].grad.tolist() == [3.0, 6.0, 9.0]
    grad = binary_connect_grad(gates[0].grad, alpha, [2, 0])
    hand = 6 * math.exp(0.7) / (math.exp(0.5) + math.exp(0.2)) ** 2
    assert hand == pytest.approx(1.46675, abs=1e-5)
    assert grad.tolist() == pytest.approx([-hand, 0.0, hand], abs=1e-6)
    # the reference implementation's double loop: Σ_j G_j p̃_j (δ_ij − p̃_i)
    inv = [2, 0]
    ps = torch.softmax(alpha[inv], 0)
    loop = torch.zeros(3)
    for i in range(2):
        for j in range(2):
            loop[inv[i]] += gates[0].grad[inv[j]] * ps[j] * (float(i == j) - ps[i])
    assert torch.allclose(grad, loop, atol=1e-6)
    # all options involved ("full" mode): Σ_i ∂L/∂α_i = 0 and the formula matches the loop too
    full = binary_connect_grad(gates[0].grad, alpha, [0, 1, 2])
    pf = torch.softmax(alpha, 0)
    assert full.sum().item() == pytest.approx(0.0, abs=1e-6)
    assert full[1].item() == pytest.approx(float(pf[1] * (6 - (pf * gates[0].grad).sum())), abs=1e-6)


def test_rescale_keeps_unsampled_probabilities_and_the_pair_ratio():
    old = torch.tensor([0.0, 1.0, 2.0, 3.0])
    new = torch.tensor([0.0, 1.7, 2.0, 2.1])  # the optimizer moved entries 1 and 3
    rescale_pair(new, old, [3, 1])
    p_old, p_new = torch.softmax(old, 0), torch.softmax(new, 0)
    assert p_new[0].item() == pytest.approx(p_old[0].item(), abs=1e-6)
    assert p_new[2].item() == pytest.approx(p_old[2].item(), abs=1e-6)
    assert (new[3] - new[1]).item() == pytest.approx(0.4, abs=1e-6)  # the update's effect inside the pair


def test_log_prob_of_a_path():
    alphas = [torch.tensor([0.0, math.log(3.0)]), torch.tensor([0.0, 0.0, 0.0])]
    assert log_prob(alphas, np.array([1, 2])).item() == pytest.approx(math.log(0.75 / 3), abs=1e-6)


# ---- latency losses ----------------------------------------------------------------------------


def test_mul_loss_equals_the_reference_code_at_its_own_setting():
    """Reference ``mul#log``: α·CE·(log E / log T)^β with ms and the 80 ms mobile budget."""
    ce, e = torch.tensor(1.3), torch.tensor(95.0)
    ref = 0.2 * 1.3 * (math.log(95.0) / math.log(80.0)) ** 0.3
    assert proxyless_mul_loss(ce, e, 80.0).item() == pytest.approx(ref, rel=1e-6)


def test_mul_loss_depends_on_the_budget_ratio_only():
    ce = torch.tensor(2.0)
    a = proxyless_mul_loss(ce, torch.tensor(0.36), 0.3, alpha=1.0, beta=0.6)  # 32x32 CPU budget, < 1 ms
    b = proxyless_mul_loss(ce, torch.tensor(36.0), 30.0, alpha=1.0, beta=0.6)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert a.item() > 2.0  # over budget: penalized (a ms log would have flipped the sign at T < 1 ms)
    under = proxyless_mul_loss(ce, torch.tensor(0.24), 0.3, alpha=1.0, beta=0.6)
    assert under.item() < 2.0
    # gradient pushes E[LAT] down, harder per unit of E when E is above T than the additive form's constant
    e = torch.tensor(0.36, requires_grad=True)
    proxyless_mul_loss(ce, e, 0.3).backward()
    assert e.grad.item() > 0


def test_mul_factor_clamps_far_below_the_budget():
    f = proxyless_mul_factor(torch.tensor(0.001), 1.0, beta=0.3)  # E < T/80: ratio ≤ 0 → clamped
    assert 0 < f.item() < 0.02


def test_add_loss():
    assert proxyless_add_loss(torch.tensor(1.0), torch.tensor(0.45), 0.3, lam=0.1).item() == pytest.approx(1.15)
    with pytest.raises(InputError):
        proxyless_add_loss(torch.tensor(1.0), torch.tensor(0.45), 0.0)


def test_reinforce_reward_soft_and_over_budget_exponents():
    from hwnas.search.objective import Constraints
    from hwnas.search.proxyless_steps import ArchObjective, ProxylessConfig

    class Lat:  # predicted latency (ms) = first option index + 1
        def latency(self, idx):
            return np.asarray(idx)[:, 0] + 1.0

    paths = np.array([[0], [1], [3]])  # 1, 2 and 4 ms against T = 2 ms
    acc = np.array([0.5, 0.5, 0.8])
    soft = ArchObjective(config=ProxylessConfig(mode="reinforce", rl_reward="mnasnet"), predictor=Lat(),
                         constraints=Constraints(latency_ms=2.0)).reward(acc, paths)
    assert soft.tolist() == pytest.approx([0.5 * 0.5**-0.1, 0.5, 0.8 * 2**-0.1])  # the reference's acc·(T/LAT)^0.1
    hard = ArchObjective(config=ProxylessConfig(mode="reinforce", rl_reward="mnasnet", rl_over_tradeoff=1.0), predictor=Lat(),
                         constraints=Constraints(latency_ms=2.0)).reward(acc, paths)
    assert hard.tolist() == pytest.approx([0.5 * 0.5**-0.1, 0.5, 0.4])
