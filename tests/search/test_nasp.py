"""NASP (Yao et al., AAAI 2020): the proximal operators by hand, one op per decision forward and
backward, the gradient at the discrete point, the box, and ``hwnas search --strategy nasp`` end to
end (in process) with kill and resume. Tables are synthetic: search mechanics, not latency claims."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.search.strategies.nasp import (BoxArchParams, binarize, complexity, prox_box, prox_one_hot, proximal,
                                          selected)
from hwnas.space import load_space
from hwnas.supernet import SuperNet
from hwnas.train import classification_loss
from tests.conftest import TOY_SPACE, assert_resume_repeats, read_history, search_runner, synthetic_table


def test_prox_c_is_the_box_then_the_largest_entry_of_each_row():
    a = torch.tensor([[0.2, 1.7, 0.4, -0.3],
                      [-1.0, -2.0, -0.5, -0.1],
                      [0.6, 0.6, 0.1, 0.3]])
    assert torch.allclose(prox_box(a), torch.tensor([[0.2, 1.0, 0.4, 0.0], [0.0, 0.0, 0.0, 0.0],
                                                     [0.6, 0.6, 0.1, 0.3]]))
    # row 0: 1.7 clipped to 1 and kept; row 1: all clipped to 0, the first kept; row 2: tie, the first
    assert torch.allclose(proximal(a), torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0],
                                                     [0.6, 0.0, 0.0, 0.0]]))
    assert prox_one_hot(torch.tensor([0.2, 0.7, 0.7, 0.1])).tolist() == pytest.approx([0, 0.7, 0, 0])
    assert binarize(prox_box(a)).tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]


def test_the_box_holds_after_a_step_and_the_start_is_seeded():
    a, b = BoxArchParams([3, 4], seed=0), BoxArchParams([3, 4], seed=0)
    assert all(torch.equal(x, y) for x, y in zip(a.alphas, b.alphas))
    assert all(float(x.detach().min()) >= 0 and float(x.detach().max()) <= 1e-2 for x in a.alphas)
    with torch.no_grad():
        a.alphas[0] += torch.tensor([2.0, -3.0, 0.5])
    a.clip()
    assert a.alphas[0].tolist() == pytest.approx([1.0, 0.0, 0.5 + float(b.alphas[0][2].detach())])
    assert a.snapshot()[0] == pytest.approx(a.alphas[0].tolist())


def _net():
    sp = load_space(str(TOY_SPACE))
    torch.manual_seed(0)
    return sp, SuperNet(sp, resolution=32, width_mult=1.0, num_classes=10)


def test_only_the_selected_op_of_each_decision_runs(monkeypatch):
    sp, net = _net()
    arch = BoxArchParams(sp.num_options, seed=1)
    abar = arch.discrete()
    calls = []
    real = SuperNet.run_step
    monkeypatch.setattr(SuperNet, "run_step", lambda self, step, *x: calls.append(step) or real(self, step, *x))
    net.weighted_forward(torch.randn(2, 3, 32, 32), abar, compute=selected(abar))
    ran = [s.candidate for s in calls]
    calls.clear()
    net(torch.randn(2, 3, 32, 32), np.array(arch.derive()))  # the single path of argmax A
    assert ran == [s.candidate for s in calls] and len(ran) > 0


def test_the_gradient_is_taken_at_the_discrete_point():
    sp, net = _net()
    arch = BoxArchParams(sp.num_options, seed=2)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    net.eval()  # batch statistics frozen, so the finite difference sees one function
    abar = arch.discrete()
    grads = torch.autograd.grad(classification_loss(net.weighted_forward(x, abar, compute=selected(abar)), y), abar)
    d = next(i for i, n in enumerate(sp.num_options) if n > 1)
    k = int(abar[d].argmax())
    assert all(float(g[j]) == 0.0 for g, b in zip(grads, abar) for j in range(len(b)) if b[j] == 0)

    def loss_at(v: float) -> float:
        w = [b.detach().clone() for b in abar]
        w[d][k] = v
        with torch.no_grad():
            return float(classification_loss(net.weighted_forward(x, w, compute=selected(abar)), y))

    h = 1e-2
    assert float(grads[d][k]) == pytest.approx((loss_at(1 + h) - loss_at(1 - h)) / (2 * h), rel=2e-2, abs=1e-4)


def test_the_model_size_regularizer_by_hand():
    abar = [torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0])]
    weights = [torch.tensor([0.2, 0.5, 0.3]), torch.tensor([0.0, 1.0])]
    assert float(complexity(abar, weights)) == pytest.approx(0.5)  # 0.5·1² + 0·1²


_search = search_runner("--strategy", "nasp", "--data-limit", "128", "--bn-batches", "1", "--seed", "3",
                        "--verify", "0")


def test_nasp_searches_and_resumes_after_a_kill_to_the_same_result(tmp_path):
    table = synthetic_table(str(TOY_SPACE), resolution=32, width_mult=0.25, num_classes=10, path=tmp_path / "t.json")
    args = ["--space", str(TOY_SPACE), "--table", str(table), "--latency-ms", "0.05", "--epochs", "2",
            "--nasp-arch-lr", "0.2", "--nasp-params-eta", "0.1"]
    full = _search(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    s = json.loads(full.stdout)
    hist = read_history(tmp_path / "full")
    assert [h["phase"] for h in hist] == ["nasp", "nasp"]
    assert all(0.0 <= v <= 1.0 for h in hist for row in h["probs"] for v in row)  # A stays in the box
    final = s["extra"]["final_A"]
    assert all(r[d] == max(r) for r, d in zip(final, hist[-1]["derived"]))  # argmax A (rounded to 1e-6)
    assert s["strategy"] == "nasp" and s["latency_source"] == "predicted"
    assert_resume_repeats(_search, args, full=full, full_dir=tmp_path / "full", out=tmp_path / "killed",
                          crash="nasp_step:3")
