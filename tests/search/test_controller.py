"""MnasNet's reward and RL controller: hand-computed rewards, valid and correctly distributed samples,
policy-gradient losses, and convergence to the known best architecture of a toy reward."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import InputError
from hwnas.search.controller import (Controller, ControllerConfig, PolicyTrainer, controller_search, ema_baseline,
                                     ppo_loss, reinforce_loss)
from hwnas.search.objective import MNAS_REWARDS, mnasnet_reward
from hwnas.space.loader import load_space, space_names

# ---- reward (Tan et al. 2019, Eq. 2) ------------------------------------------------------------


def test_soft_reward_by_hand():
    a, b = MNAS_REWARDS["soft"]
    assert (a, b) == (-0.07, -0.07)
    # 2^-0.07 = exp(-0.07 · 0.693147) = exp(-0.0485203) = 0.952638; 0.5^-0.07 = 1.049717
    assert mnasnet_reward(0.8, 20.0, 10.0, alpha=a, beta=b) == pytest.approx(0.8 * 0.952638, abs=1e-6)
    assert mnasnet_reward(0.8, 5.0, 10.0, alpha=a, beta=b) == pytest.approx(0.8 * 1.049717, abs=1e-6)
    assert mnasnet_reward(0.8, 10.0, 10.0, alpha=a, beta=b) == 0.8
    # the defaults are the soft setting
    assert mnasnet_reward(0.8, 20.0, 10.0) == mnasnet_reward(0.8, 20.0, 10.0, alpha=a, beta=b)


def test_hard_reward_by_hand():
    a, b = MNAS_REWARDS["hard"]
    assert (a, b) == (0.0, -1.0)
    assert mnasnet_reward(0.8, 5.0, 10.0, alpha=a, beta=b) == 0.8  # under T: the accuracy
    assert mnasnet_reward(0.8, 10.0, 10.0, alpha=a, beta=b) == 0.8  # LAT = T takes α
    assert mnasnet_reward(0.8, 20.0, 10.0, alpha=a, beta=b) == pytest.approx(0.4)  # 0.8 · (20/10)^-1
    assert mnasnet_reward(0.6, 40.0, 10.0, alpha=a, beta=b) == pytest.approx(0.15)


def test_reward_is_vectorized_and_checks_its_input():
    out = mnasnet_reward(np.array([0.8, 0.8, 0.5]), np.array([5.0, 20.0, 10.0]), 10.0, alpha=0.0, beta=-1.0)
    assert isinstance(out, np.ndarray) and out.tolist() == pytest.approx([0.8, 0.4, 0.5])
    assert mnasnet_reward(0.9, np.array([10.0, 11.0]), 10.0).shape == (2,)  # broadcasting
    with pytest.raises(InputError, match="target"):
        mnasnet_reward(0.8, 1.0, 0.0)
    with pytest.raises(InputError, match="positive"):
        mnasnet_reward(0.8, np.array([1.0, 0.0]), 1.0)


def _logp(ctrl: Controller, idx: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ctrl.evaluate(idx)[0].numpy()


# ---- sampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", space_names())
def test_sampled_decisions_always_decode(name):
    space = load_space(name)
    ctrl = Controller(space.num_options, hidden=16)
    idx = ctrl.sample(64, np.random.default_rng(0))
    assert idx.shape == (64, len(space.decisions)) and idx.dtype == np.int64
    for row in idx:
        space.validate_arch(space.decode(row))
    with torch.no_grad():  # extreme, saturated logits still give in-range tokens
        for p in ctrl.parameters():
            p.mul_(1e4)
    for row in ctrl.sample(16, np.random.default_rng(1)):
        space.validate_arch(space.decode(row))
    space.validate_arch(space.decode(ctrl.greedy()))


@settings(max_examples=25, deadline=None)
@given(num_options=st.lists(st.integers(1, 7), min_size=1, max_size=12), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.0, 1.0, 50.0]), tanh_c=st.sampled_from([0.0, 2.5]))
def test_samples_are_in_range(num_options, seed, scale, tanh_c):
    torch.manual_seed(seed % 1000)
    ctrl = Controller(num_options, hidden=8, tanh_constant=tanh_c)
    with torch.no_grad():
        for p in ctrl.parameters():
            p.mul_(scale)
    idx = ctrl.sample(8, np.random.default_rng(seed))
    assert ((idx >= 0) & (idx < np.asarray(num_options))).all()


def test_sampling_follows_the_softmax_and_is_reproducible():
    ctrl = Controller([3], hidden=4, tanh_constant=0.0)
    with torch.no_grad():
        ctrl.heads[0].weight.zero_()
        ctrl.heads[0].bias.copy_(torch.log(torch.tensor([0.2, 0.5, 0.3])))
    idx = ctrl.sample(30000, np.random.default_rng(0))
    freq = np.bincount(idx[:, 0], minlength=3) / len(idx)
    assert freq == pytest.approx([0.2, 0.5, 0.3], abs=0.01)  # 4 standard errors ≈ 0.011
    logp, ent = ctrl.evaluate(np.array([[0], [1], [2]]))
    assert logp.detach().numpy() == pytest.approx(np.log([0.2, 0.5, 0.3]), abs=1e-6)
    h = -(0.2 * math.log(0.2) + 0.5 * math.log(0.5) + 0.3 * math.log(0.3))  # 1.0297 nats
    assert ent.detach().numpy() == pytest.approx([h] * 3, abs=1e-6)
    assert (ctrl.sample(50, np.random.default_rng(7)) == ctrl.sample(50, np.random.default_rng(7))).all()
    assert ctrl.greedy().tolist() == [1]


def test_uniform_policy_entropy_and_fed_back_tokens():
    ctrl = Controller([2, 3, 4], hidden=8, tanh_constant=0.0)
    with torch.no_grad():
        for head in ctrl.heads:
            head.weight.zero_()
            head.bias.zero_()
    logp, ent = (t.detach() for t in ctrl.evaluate(np.array([[1, 2, 3]])))
    assert float(logp) == pytest.approx(-math.log(24), abs=1e-6)
    assert float(ent) == pytest.approx(math.log(24), abs=1e-6)  # Σ log n_d
    # with a trained-looking head the next token depends on the previous choice (embedding fed back)
    torch.manual_seed(0)
    ctrl = Controller([2, 3], hidden=8)
    lp = _logp(ctrl, np.array([[0, 1], [1, 1], [0, 0], [1, 0]]))
    assert lp[0] - lp[1] != pytest.approx(lp[2] - lp[3], abs=1e-6)


# ---- losses and updates ----------------------------------------------------------------------


def test_losses_by_hand():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    adv = torch.tensor([0.5, -1.0])
    ent = torch.tensor([3.0, 1.0])
    loss = reinforce_loss(logp, adv, ent, entropy_weight=0.1)
    assert float(loss.detach()) == pytest.approx(-((0.5 * -1.0 + -1.0 * -2.0) / 2) - 0.1 * 2.0)  # -0.75 - 0.2
    loss.backward()
    assert logp.grad.tolist() == pytest.approx([-0.25, 0.5])  # -A / N
    old = torch.tensor([-1.0, -1.0])
    new = torch.log(torch.tensor([1.5, 0.5])) + old  # ratios 1.5 and 0.5
    loss = ppo_loss(new, old, torch.tensor([1.0, 1.0]), torch.zeros(2), clip=0.2, entropy_weight=0.0)
    assert float(loss) == pytest.approx(-(1.2 + 0.5) / 2)  # min(1.5, 1.2) and min(0.5, 0.8)
    loss = ppo_loss(new, old, torch.tensor([-1.0, -1.0]), torch.zeros(2), clip=0.2, entropy_weight=0.0)
    assert float(loss) == pytest.approx(-(-1.5 - 0.8) / 2)  # min(-1.5, -1.2) and min(-0.5, -0.8)
    assert ema_baseline(None, np.array([0.2, 0.4]), decay=0.9) == pytest.approx(0.3)
    assert ema_baseline(0.3, np.array([0.5, 0.7]), decay=0.9) == pytest.approx(0.9 * 0.3 + 0.1 * 0.6)


@pytest.mark.parametrize("ppo", [False, True])
def test_update_raises_the_probability_of_good_archs(ppo):
    trainer = PolicyTrainer([4, 4, 4], config=ControllerConfig(ppo=ppo, lr=0.01), seed=0)
    good, bad = np.array([[1, 2, 3]]), np.array([[0, 0, 0]])
    before = _logp(trainer.controller, np.concatenate([good, bad]))
    trainer.update(np.concatenate([good, bad]), np.array([1.0, 0.0]))
    after = _logp(trainer.controller, np.concatenate([good, bad]))
    assert after[0] > before[0] and after[1] < before[1]
    assert trainer.baseline == pytest.approx(0.5)  # the first batch's mean
    state = copy.deepcopy(trainer.state_dict())
    clone = PolicyTrainer([4, 4, 4], config=ControllerConfig(ppo=ppo, lr=0.01), seed=99)
    clone.load_state_dict(state)
    assert (clone.controller.sample(8, np.random.default_rng(3)) ==
            trainer.controller.sample(8, np.random.default_rng(3))).all()


def test_config_is_validated():
    with pytest.raises(InputError, match="--mnas-ppo-clip"):
        ControllerConfig(ppo_clip=1.5)
    with pytest.raises(InputError, match="--mnas-baseline-decay"):
        ControllerConfig(baseline_decay=1.0)


# ---- convergence on a known reward -----------------------------------------------------------

NUM_OPTIONS = (4,) * 8 + (3,) * 4  # 4^8 · 3^4 = 5.3 million architectures
TARGET = np.array([(3 * i + 1) % n for i, n in enumerate(NUM_OPTIONS)])


def _onemax(idx: np.ndarray) -> list[dict]:
    """Reward = share of decisions equal to TARGET: the best architecture is TARGET (reward 1)."""
    return [{"reward": float(np.mean(row == TARGET))} for row in idx]


@pytest.mark.parametrize("ppo,lr", [(False, 5e-3), (True, 2e-3)])
def test_policy_gradient_converges_to_the_best_arch(ppo, lr):
    state = controller_search(num_options=NUM_OPTIONS, evaluate_batch=_onemax, config=ControllerConfig(ppo=ppo, lr=lr),
                              steps=60, archs_per_step=8, seed=0)  # 480 of 5.3e6 architectures sampled
    assert state["greedy"] == TARGET.tolist()
    curve = [c["mean_reward"] for c in state["curve"]]
    assert np.mean(curve[:5]) < 0.45 and np.mean(curve[-5:]) > 0.9  # uniform start: 1/4·8/12 + 1/3·4/12 ≈ 0.28


def test_controller_loop_resumes_to_the_same_result():
    snapshots = []
    cfg = ControllerConfig()
    full = controller_search(num_options=NUM_OPTIONS, evaluate_batch=_onemax, config=cfg, steps=6, archs_per_step=4,
                             seed=5, on_step=lambda s, _: snapshots.append(copy.deepcopy(s)))
    resumed = controller_search(num_options=NUM_OPTIONS, evaluate_batch=_onemax, config=cfg, steps=6,
                                archs_per_step=4, seed=5, state=copy.deepcopy(snapshots[2]))
    assert resumed["samples"] == full["samples"] and resumed["curve"] == full["curve"]
    assert resumed["greedy"] == full["greedy"]
    for k, v in full["trainer"]["controller"].items():
        assert torch.equal(v, resumed["trainer"]["controller"][k]), k
