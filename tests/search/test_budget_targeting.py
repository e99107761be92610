"""Budget-targeting latency terms (issue 15): LightNAS's dual ascent, TF-NAS's |LAT/T − 1|, TuNAS's
absolute reward, the papers' old forms unchanged, and λ through a checkpoint. All by hand or on toys."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwnas.errors import InputError
from hwnas.search.dnas import ArchParams
from hwnas.search.dual_ascent import BudgetTerm, DualAscentConfig
from hwnas.search.objective import (Constraints, lightnas_loss, proxyless_add_loss, proxyless_mul_loss, tfnas_loss,
                                    tunas_reward)
from hwnas.search.proxyless_steps import ArchObjective, ProxylessConfig, ProxylessSteps

# ---- the forms by hand ---------------------------------------------------------------------------


def test_tunas_absolute_reward_by_hand():
    assert tunas_reward(0.9, 1.1, 1.0, beta=-0.1) == pytest.approx(0.89)
    assert tunas_reward(0.9, 0.9, 1.0) == pytest.approx(0.89)  # default β = −0.10, symmetric around T
    assert tunas_reward(0.9, 1.0, 1.0) == pytest.approx(0.9)  # the peak is at T
    out = tunas_reward(np.array([0.5, 0.8]), np.array([2.0, 0.5]), 1.0, beta=-0.2)
    assert out.tolist() == pytest.approx([0.5 - 0.2 * 1.0, 0.8 - 0.2 * 0.5])
    with pytest.raises(InputError):
        tunas_reward(0.9, 1.0, 0.0)


def test_tfnas_term_by_hand_pulls_from_both_sides():
    assert float(tfnas_loss(torch.tensor(1.0), torch.tensor(0.45), 0.3, lam=0.1)) == pytest.approx(1.05)
    assert float(tfnas_loss(torch.tensor(1.0), torch.tensor(0.15), 0.3, lam=0.1)) == pytest.approx(1.05)
    for e, sign in ((0.45, 1.0), (0.15, -1.0)):
        x = torch.tensor(e, requires_grad=True)
        tfnas_loss(torch.tensor(1.0), x, 0.3, lam=0.1).backward()
        assert float(x.grad) == pytest.approx(sign * 0.1 / 0.3)  # ±λ / T


def test_lightnas_term_by_hand_and_a_negative_lambda_pulls_up():
    assert float(lightnas_loss(torch.tensor(1.0), torch.tensor(0.45), 0.3, lam=0.2)) == pytest.approx(1.1)
    x = torch.tensor(0.15, requires_grad=True)
    loss = lightnas_loss(torch.tensor(1.0), x, 0.3, lam=-0.2)
    assert float(loss.detach()) == pytest.approx(1.0 + 0.1)  # −0.2 · (0.5 − 1)
    loss.backward()
    assert float(x.grad) == pytest.approx(-0.2 / 0.3)  # descent raises E[LAT]


def test_the_papers_forms_are_unchanged():
    ce, e = torch.tensor(2.0), torch.tensor(0.36)
    mul = 0.2 * 2.0 * (1 + math.log(0.36 / 0.3) / math.log(80.0)) ** 0.3
    assert float(proxyless_mul_loss(ce, e, 0.3)) == pytest.approx(mul, rel=1e-6)
    assert float(proxyless_add_loss(torch.tensor(1.0), torch.tensor(0.45), 0.3, lam=0.1)) == pytest.approx(1.15)

    class Pred:  # E[LAT] = Σ_d p_d · (1, 2): a hand-checkable stand-in predictor, ms
        def expected_latency(self, probs):
            return sum((p * torch.tensor([1.0, 2.0])).sum() for p in probs)

    probs = [torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])]  # E = 1.5 + 1.75 = 3.25 ms
    for loss, ref in (("mul", proxyless_mul_loss(ce, torch.tensor(3.25), 3.0)),
                      ("add", proxyless_add_loss(ce, torch.tensor(3.25), 3.0, lam=0.1))):
        obj = ArchObjective(config=ProxylessConfig(loss=loss), predictor=Pred(),
                            constraints=Constraints(latency_ms=3.0))
        got, parts = obj.loss(ce, probs)
        assert obj.term is None and "lambda" not in parts
        assert torch.equal(got, ref)  # bit-identical to the paper's formula
    assert ProxylessConfig().loss == "target" and ProxylessConfig().rl_reward == "absolute"


# ---- dual ascent ---------------------------------------------------------------------------------


def test_dual_ascent_update_by_hand():
    cfg = DualAscentConfig(lambda0=0.5, lr=0.1, margin=0.8, gain=2.0)
    term = BudgetTerm(form="target", budget=1.0, config=cfg, fixed_lambda=0.1, state=None)
    assert term.target == pytest.approx(0.8) and term.coefficient == pytest.approx(0.5)
    term.update(1.2)  # e = 1.2 / 0.8 − 1 = 0.5
    assert term.lam == pytest.approx(0.55) and term.coefficient == pytest.approx(0.55 + 2.0 * 0.5)
    term.update(0.4)  # e = −0.5
    assert term.lam == pytest.approx(0.5) and term.coefficient == pytest.approx(0.5 - 1.0)
    loss = term.loss(torch.tensor(1.0), torch.tensor(1.2))
    assert float(loss) == pytest.approx(1.0 + (0.5 - 1.0) * 0.5)
    tf = BudgetTerm(form="tfnas", budget=1.0, config=cfg, fixed_lambda=0.1, state=None)
    assert tf.update(5.0) == 0.1 and float(tf.loss(torch.tensor(0.0), torch.tensor(0.4))) == pytest.approx(0.05)
    for bad in (dict(lr=-1.0), dict(margin=0.0), dict(margin=1.5), dict(gain=-1.0), dict(lambda0=math.inf)):
        with pytest.raises(InputError):
            DualAscentConfig(**bad)


#: Per-option latencies of a hand-made toy, ms: 6 decisions × 3 options; option 0 is the most
#: expensive, so argmax of α = 0 (all ties) starts at the most expensive architecture (10.9 ms).
TOY_LAT = torch.tensor([[2.1, 1.3, 1.0], [1.2, 0.9, 0.4], [1.6, 0.7, 0.2], [1.9, 1.5, 1.1], [0.8, 0.5, 0.3],
                        [1.7, 1.4, 0.6]])


def _toy_search(budget: float, *, steps: int = 300) -> tuple[list[tuple[float, float, float]], BudgetTerm]:
    """Architecture steps only, accuracy flat (CE ≡ 0): only the budget term moves α (Adam, lr 0.05).

    E[LAT] = Σ_d Σ_o softmax(α_d)_o · TOY_LAT[d, o]; the derived latency is Σ_d TOY_LAT[d, argmax α_d].
    Returns (E/T, derived/T, λ) after every step and the term.
    """
    alpha = torch.zeros(TOY_LAT.shape, requires_grad=True)
    opt = torch.optim.Adam([alpha], lr=0.05, betas=(0.0, 0.999))
    term = BudgetTerm(form="target", budget=budget, config=DualAscentConfig(), fixed_lambda=0.1, state=None)
    trace = []
    for _ in range(steps):
        expected = (torch.softmax(alpha, 1) * TOY_LAT).sum()  # ms
        opt.zero_grad()
        term.loss(torch.zeros(()), expected).backward()
        opt.step()
        idx = alpha.detach().argmax(1)
        derived = float(TOY_LAT.gather(1, idx[:, None]).sum())
        term.update(derived, idx.tolist())
        trace.append((float(expected.detach()) / budget, derived / budget, term.lam))
    return trace, term


@pytest.mark.parametrize("budget, start", [(7.0, "over"), (9.0, "under-after-the-first-step")])
def test_dual_ascent_drives_the_toy_to_the_budget_and_lambda_moves_the_right_way(budget, start):
    trace, term = _toy_search(budget)
    first_e = trace[0][0]
    if start == "over":
        assert trace[0][1] > 1.0 and trace[0][2] > 0  # over budget: λ grows and pulls the latency down
    last = np.array(trace[-50:])
    assert 0.88 <= np.median(last[:, 1]) <= 1.03  # the argmax architecture swings around T_eff = 0.975·T
    assert abs(last[-1, 0] - 1.0) < abs(first_e - 1.0)  # E[LAT] moved towards T
    idx = np.asarray(TOY_LAT.shape[0] * [0])
    end = term.end_point(idx, float(TOY_LAT[:, 0].sum()))  # a final argmax over T: the nearest visited under T
    end_lat = float(TOY_LAT.gather(1, torch.as_tensor(end)[:, None]).sum()) / budget
    assert end.tolist() == term.best_within and end_lat == pytest.approx(term.best_within_ms / budget)
    assert 0.88 <= end_lat <= 1.0  # this toy swings between 0.90·T and 1.014·T


def test_lambda_goes_negative_when_the_search_is_far_under_the_budget():
    trace, _ = _toy_search(12.0, steps=3)  # even the most expensive arch (10.9 ms) is under 0.975 · 12
    assert all(d < 1.0 for _, d, _ in trace) and trace[-1][2] < 0  # λ < 0: the term pulls E[LAT] up
    assert trace[-1][0] > trace[0][0] or trace[0][0] > 0.9  # E[LAT] rises (or is already at its top)


# ---- λ through a checkpoint ----------------------------------------------------------------------


class _ToyPredictor:
    """Stand-in for ``BatchPredictor`` on the toy: latency by hand (ms)."""

    def expected_latency(self, probs):
        return sum((p * TOY_LAT[d]).sum() for d, p in enumerate(probs))

    def latency(self, indices):
        idx = torch.as_tensor(np.asarray(indices))
        return TOY_LAT.gather(1, idx.T).sum(0).numpy().astype(np.float64)


class _FlatNet(torch.nn.Module):
    """Logits that do not depend on the path (flat accuracy)."""

    def forward(self, x, path):
        return torch.zeros(len(x), 4)


def test_lambda_round_trips_through_the_checkpoint(monkeypatch):
    """Steps 0..19 in one go == steps 0..9, a checkpoint (α, Adam, strategy state), then 10..19."""
    import hwnas.search.proxyless_steps as ps

    monkeypatch.setattr(ps, "gated_forward", lambda net, x, gates, paths: sum(
        (g * 0).sum() for g in gates if g.requires_grad) + torch.zeros(len(x), 4))
    cfg = ProxylessConfig(dual=DualAscentConfig(lr=0.5))
    x, y = torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])

    def run(steps, state=None):
        arch = ArchParams([3] * 6)
        opt = torch.optim.Adam(arch.parameters(), lr=0.05, betas=(0.0, 0.999))
        if state is not None:
            arch.load_state_dict(state["arch"])
            opt.load_state_dict(state["opt"])
        saved = (state or {}).get("strategy") or {}
        obj = ArchObjective(config=cfg, predictor=_ToyPredictor(), constraints=Constraints(latency_ms=7.0),
                            term_state=saved.get("budget_term"))
        stepper = ProxylessSteps(cfg=cfg, supernet=_FlatNet(), arch=arch, objective=obj, state=saved)
        for s in steps:
            opt.zero_grad(set_to_none=True)
            stepper.arch_gradient(x, y, np.random.default_rng([3, s]), s)
            opt.step()
            stepper.after_arch_step(s)
        return {"arch": arch.state_dict(), "opt": opt.state_dict(), "strategy": stepper.state()}, arch

    full, arch_full = run(range(20))
    half, _ = run(range(10))
    assert half["strategy"]["budget_term"]["updates"] == 10
    resumed, arch_resumed = run(range(10, 20), state=half)
    assert resumed["strategy"]["budget_term"] == full["strategy"]["budget_term"]
    assert full["strategy"]["budget_term"]["lambda"] != 0.0
    assert arch_resumed.derive().tolist() == arch_full.derive().tolist()
