"""DARTS (Liu et al., ICLR 2019): the second-order hypergradient against autograd through the
unrolled step, softmax mixing, the memory refusal, derivation without ``none``, and ``hwnas search
--strategy darts`` (orders 1 and 2) with kill and resume. Tables are synthetic: search mechanics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.search.relaxation import candidate_blocks, derive_non_none
from hwnas.search.strategies.darts import estimate_activation_gb, unrolled_gradient
from hwnas.space import load_space
from hwnas.supernet import SuperNet
from tests.conftest import TOY_SPACE, assert_resume_repeats, read_history, run_cli, search_runner, synthetic_table


def test_the_second_order_gradient_matches_autograd_through_the_unrolled_step():
    torch.manual_seed(0)
    w = [torch.randn(3, 4, requires_grad=True), torch.randn(4, requires_grad=True)]
    alpha = [torch.randn(4, requires_grad=True)]
    xt, xv = torch.randn(8, 3), torch.randn(8, 3)

    def loss(ws, a, x):  # a small non-linear model: softmax(α) gates the hidden units
        h = torch.tanh(x @ ws[0] + ws[1]) * torch.softmax(a[0], 0)
        return (h.sum(1) - 0.5).pow(2).mean() + 0.1 * (ws[0] ** 2).sum() * a[0].sigmoid().mean()

    xi = 0.1
    got = unrolled_gradient(weights=w, alphas=alpha, train_loss=lambda: loss(w, alpha, xt),
                            val_loss=lambda: loss(w, alpha, xv), xi=xi)
    g = torch.autograd.grad(loss(w, alpha, xt), w, create_graph=True)
    w_unrolled = [p - xi * gp for p, gp in zip(w, g)]
    want = torch.autograd.grad(loss(w_unrolled, alpha, xv), alpha)[0]
    assert torch.allclose(got[0], want, atol=1e-3, rtol=1e-3)
    first_order = torch.autograd.grad(loss([p.detach().requires_grad_() for p in w_unrolled], alpha, xv), alpha)[0]
    assert not torch.allclose(first_order, want, atol=1e-3)  # the second-order term matters here
    # the weights are back where they were
    torch.manual_seed(0)
    assert torch.equal(w[0].detach(), torch.randn(3, 4)) and torch.equal(w[1].detach(), torch.randn(4))


def test_the_mixed_op_is_the_softmax_weighted_sum_of_every_candidate(monkeypatch):
    sp = load_space(str(TOY_SPACE))  # l1: k3 | k5, both computed
    torch.manual_seed(0)
    net = SuperNet(sp, resolution=8, width_mult=1.0, num_classes=4).eval()
    calls = []
    real = SuperNet.run_step
    monkeypatch.setattr(SuperNet, "run_step",
                        lambda self, step, *x: calls.append((step, x[0], out := real(self, step, *x))) or out)
    p = torch.softmax(torch.tensor([0.3, -0.4]), 0)
    weights = [p, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0])]
    with torch.no_grad():
        net.weighted_forward(torch.randn(2, 3, 8, 8), weights)
    l1 = [i for i, (step, _, _) in enumerate(calls) if step.candidate is not None and step.block.slot == "s1.0"]
    assert len(l1) == 2  # both candidates ran, on the same input
    (_, x0, y0), (_, x1, y1) = calls[l1[0]], calls[l1[1]]
    assert torch.equal(x0, x1)
    assert torch.allclose(calls[l1[1] + 1][1], p[0] * y0 + p[1] * y1, atol=1e-6)  # what the next layer reads


def test_derivation_skips_none_and_memory_estimates_grow_with_order():
    nb = load_space("nasbench201")
    alphas = [torch.tensor([5.0, 0.1, 0.3, 0.2, 0.0])] * 6  # 'none' strongest everywhere
    assert derive_non_none(nb, alphas).tolist() == [2] * 6  # nor_conv_1x1, the strongest non-none
    blocks = candidate_blocks(nb, resolution=32, width_mult=1.0, num_classes=10)
    one = estimate_activation_gb(blocks, batch=64, order=1)
    assert estimate_activation_gb(blocks, batch=64, order=2) == pytest.approx(2 * one)
    assert estimate_activation_gb(blocks, batch=32, order=1) == pytest.approx(one / 2)


_search = search_runner("--strategy", "darts", "--data-limit", "128", "--bn-batches", "1", "--seed", "3",
                        "--verify", "0")


def test_darts_refuses_too_much_memory_before_writing_anything(tables, tmp_path):
    r = _search("--space", "mobilenetv2", "--table", str(tables["mobilenetv2"]), "--latency-ms", "0.3",
                "--darts-max-memory-gb", "0.001", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "keeps every candidate's activations" in r.stderr and "GiB" in r.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("order", ["1", "2"])
def test_darts_searches_and_resumes_after_a_kill(tmp_path, order):
    table = synthetic_table(str(TOY_SPACE), resolution=32, width_mult=0.25, num_classes=10, path=tmp_path / "t.json")
    args = ["--space", str(TOY_SPACE), "--table", str(table), "--latency-ms", "0.05", "--epochs", "2",
            "--darts-order", order, "--darts-arch-lr", "0.1"]
    full = _search(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    s = json.loads(full.stdout)
    hist = read_history(tmp_path / "full")
    assert [h["phase"] for h in hist] == ["darts", "darts"] and s["extra"]["order"] == int(order)
    probs = s["extra"]["final_probs"]
    assert all(p[d] == max(p) for p, d in zip(probs, hist[-1]["derived_non_none"]))
    if order == "1":
        return
    assert_resume_repeats(_search, args, full=full, full_dir=tmp_path / "full", out=tmp_path / "killed",
                          crash="darts_step:3")
    assert np.isfinite(s["extra"]["estimated_activation_gb"])
