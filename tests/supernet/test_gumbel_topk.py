"""``hwnas.supernet.samplers.gumbel_topk``: MSG-DAS's exclusive Gumbel-TopK sampler (Sec. 3.1, Eq. 1-3, Alg. 1)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hwnas.supernet.samplers import gumbel_topk


def test_rows_are_one_hot_and_mutually_exclusive_batched_over_layers():
    logits = torch.randn(5, 3, 6)  # two leading "layer" dimensions, 6 options
    out = gumbel_topk(logits, 4, 2.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 5, 3, 6)
    assert torch.equal(out, out.round())  # one-hot in the forward pass (straight-through values are exact)
    assert torch.equal(out.sum(-1), torch.ones(4, 5, 3))  # exactly one option per row
    assert out.sum(0).max() == 1  # no option chosen twice in any layer
    full = gumbel_topk(logits, 6, 2.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(full.sum(0), torch.ones(5, 3, 6))  # k = n: a permutation of every layer's options


def test_k1_is_gdas_the_hard_gumbel_softmax_of_torch():
    alpha = torch.randn(4, 7, requires_grad=True)
    weights = torch.randn(4, 7)
    torch.manual_seed(11)
    ours = gumbel_topk(alpha, 1, 3.0)[0]
    (ours * weights).sum().backward()
    g_ours = alpha.grad.clone()
    alpha.grad = None
    torch.manual_seed(11)  # the same global stream: torch draws its noise as -log(Exp(1)) too
    ref = F.gumbel_softmax(alpha, tau=3.0, hard=True)
    (ref * weights).sum().backward()
    assert torch.equal(ours, ref)
    assert torch.allclose(g_ours, alpha.grad, atol=1e-7)


def test_straight_through_gradients_reach_logits_and_equal_the_relaxed_samples():
    alpha = torch.randn(3, 5, requires_grad=True)
    weights = torch.randn(3, 3, 5)
    hard = gumbel_topk(alpha, 3, 0.7, generator=torch.Generator().manual_seed(5))
    (hard * weights).sum().backward()
    g_hard = alpha.grad.clone()
    assert torch.count_nonzero(g_hard) == alpha.numel()  # every logit gets a gradient
    alpha.grad = None
    soft = gumbel_topk(alpha, 3, 0.7, hard=False, generator=torch.Generator().manual_seed(5))
    (soft * weights).sum().backward()
    assert torch.allclose(g_hard, alpha.grad, atol=1e-6)  # ĥ − sg(h) + h has h's gradient
    assert torch.allclose(soft.sum(-1), torch.ones(3, 3))
    assert torch.equal(hard.detach().argmax(-1), soft.detach().argmax(-1))


def test_one_gumbel_draw_and_eq3_masking():
    """Row k+1 is softmax((α + g)/τ) over the options not yet chosen, with the same g (Eq. 2-3)."""
    alpha, tau = torch.tensor([0.3, -1.0, 2.0, 0.0, 0.5]), 2.0
    soft = gumbel_topk(alpha, 3, tau, hard=False, generator=torch.Generator().manual_seed(3))
    g = -torch.empty(5).exponential_(generator=torch.Generator().manual_seed(3)).log()
    r = (alpha + g) / tau
    order = torch.argsort(r, descending=True)
    for k in range(3):
        keep = torch.ones(5, dtype=torch.bool)
        keep[order[:k]] = False
        expected = torch.zeros(5)
        expected[keep] = torch.softmax(r[keep], 0)
        assert torch.allclose(soft[k], expected, atol=1e-6)
        assert int(soft[k].argmax()) == int(order[k])


def test_sampling_distribution_is_sampling_without_replacement():
    """With many draws (one batched call), row 1 ~ softmax(α) and row 2 | row 1 = i ~ p_j / (1 − p_i).

    Tolerance: every frequency within 4.5 standard errors sqrt(p(1 − p)/n) of its probability
    (a false alarm has probability < 1e-4 over all cells).
    """
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 200_000
    logits = (p.log() + 1.7).expand(n, 4)  # a constant shift must not matter
    rows = gumbel_topk(logits, 2, 5.0, generator=torch.Generator().manual_seed(2024))
    first, second = rows[0].argmax(-1), rows[1].argmax(-1)
    assert torch.all(first != second)

    def check(freq: float, prob: float, count: int) -> None:
        se = math.sqrt(prob * (1 - prob) / count)
        assert abs(freq - prob) <= 4.5 * se, (freq, prob, count)

    for i in range(4):
        check(float((first == i).float().mean()), float(p[i]), n)
        given = second[first == i]
        for j in range(4):
            if j != i:
                check(float((given == j).float().mean()), float(p[j] / (1 - p[i])), given.numel())


def test_replacement_sampling_would_fail_the_conditional_check():
    """Control: independent Gumbel draws (with replacement) give row 2 ~ p, not p_j / (1 − p_i)."""
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    n = 200_000
    gen = torch.Generator().manual_seed(1)
    first = gumbel_topk(p.log().expand(n, 4), 1, 1.0, generator=gen)[0].argmax(-1)
    second = gumbel_topk(p.log().expand(n, 4), 1, 1.0, generator=gen)[0].argmax(-1)
    given = second[first == 0]
    freq = float((given == 1).float().mean())
    assert abs(freq - 0.3) < 0.01 and abs(freq - 0.3 / 0.5) > 0.2


@pytest.mark.parametrize("k, tau", [(0, 1.0), (5, 1.0), (2, 0.0)])
def test_bad_arguments(k, tau):
    with pytest.raises(ValueError):
        gumbel_topk(torch.zeros(4), k, tau)
