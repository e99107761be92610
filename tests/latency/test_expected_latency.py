"""Expected latency: exact (brute force over every arch), gradcheck, hand-checked gradients."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hwnas.errors import InputError
from hwnas.latency.batch import BatchPredictor
from hwnas.latency.calibration import Calibration, table_fingerprint
from hwnas.latency.expected import expected_latency
from hwnas.latency.model import LatencyModel
from hwnas.space.loader import load_space
from tests.latency.test_latency_batch import synthetic_table
from tests.latency.test_latency_model import hand_table


def _probs(num_options, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(n, generator=g, dtype=dtype), 0).requires_grad_(True) for n in num_options]


def test_uniform_toy_by_hand(toy_space):
    bp = BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space)
    probs = [torch.full((n,), 1.0 / n, dtype=torch.float64, requires_grad=True) for n in toy_space.num_options]
    e = expected_latency(bp, probs)
    # stem 1 + head 0.5 + l1 (k3 2, k5 3) + l2 (k3 2, skip 0) + l3 (k3 2, k5 3, skip 0)
    assert e.item() == pytest.approx(1.0 + 0.5 + 2.5 + 1.0 + 5.0 / 3)
    e.backward()
    # ∂E/∂p(op) = lat(op): Σ_layers Σ_ops p(op) · lat(op) is linear in each layer's probabilities
    assert probs[0].grad.tolist() == [2.0, 3.0]
    assert probs[1].grad.tolist() == [2.0, 0.0]
    assert probs[2].grad.tolist() == [2.0, 3.0, 0.0]


def test_equals_brute_force_expectation(toy_space):
    table = hand_table()
    cal = Calibration(features=("lut_sum_ms", "num_blocks"), coef=(0.7, 0.1), intercept_ms=-0.2,
                      table=table_fingerprint(table))
    bp = BatchPredictor.build(LatencyModel.from_table(table, calibration=cal), toy_space)
    probs = _probs(toy_space.num_options)
    combos = np.array(list(itertools.product(*(range(n) for n in toy_space.num_options))))
    weights = np.prod([probs[d].detach().numpy()[combos[:, d]] for d in range(3)], axis=0)
    assert bp.expected_latency(probs).item() == pytest.approx(float(weights @ bp.latency(combos)), rel=1e-12)


def test_gradcheck_toy(toy_space):
    bp = BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space)
    probs = _probs(toy_space.num_options)
    assert torch.autograd.gradcheck(lambda *p: bp.expected_latency(list(p)), tuple(probs))
    # through a softmax of logits, as the strategies use it
    logits = [torch.randn(n, dtype=torch.float64, requires_grad=True) for n in toy_space.num_options]
    assert torch.autograd.gradcheck(lambda *l: bp.expected_latency([torch.softmax(x, 0) for x in l]), tuple(logits))


def test_space_with_depth_and_width_decisions():
    """mnasnet: width and depth decisions make slots depend on several decisions at once."""
    sp = load_space("mnasnet")
    bp = BatchPredictor.build(LatencyModel.from_table(synthetic_table(sp, resolution=32)), sp, resolution=32)
    assert any(len(d) > 1 for d, _ in bp._lat)
    rng = np.random.default_rng(3)
    idx = np.stack([sp.encode(sp.sample(rng, resolution=32)) for _ in range(5)])
    for row in idx:  # one-hot distributions reproduce the arch's latency exactly
        onehot = [torch.nn.functional.one_hot(torch.tensor(int(i)), n).double() for i, n in zip(row, sp.num_options)]
        assert bp.expected_latency(onehot).item() == pytest.approx(bp.latency(row)[0], rel=1e-12)
    probs = _probs(sp.num_options, seed=1)
    assert torch.autograd.gradcheck(lambda *p: bp.expected_latency(list(p)), tuple(probs))
    # a Monte Carlo estimate agrees with the exact expectation
    pn = [p.detach().numpy() for p in probs]
    sampled = np.stack([rng.choice(len(q), size=20000, p=q / q.sum()) for q in pn], axis=1)
    mc = bp.latency(sampled)
    exact = bp.expected_latency(probs).item()
    assert abs(mc.mean() - exact) < 4 * mc.std() / np.sqrt(len(mc))


def test_expected_flops_and_params_are_exact(toy_space):
    bp = BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space)
    probs = _probs(toy_space.num_options, seed=4)
    combos = np.array(list(itertools.product(*(range(n) for n in toy_space.num_options))))
    weights = np.prod([probs[d].detach().numpy()[combos[:, d]] for d in range(3)], axis=0)
    assert bp.expected_flops(probs).item() == pytest.approx(float(weights @ bp.flops(combos)), rel=1e-12)
    assert bp.expected_params(probs).item() == pytest.approx(float(weights @ bp.params(combos)), rel=1e-12)


def test_float32_and_wrong_shapes(toy_space):
    bp = BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space)
    e = bp.expected_latency(_probs(toy_space.num_options, dtype=torch.float32))
    assert e.dtype == torch.float32 and e.requires_grad
    with pytest.raises(InputError, match="one probability vector per decision"):
        bp.expected_latency([torch.ones(2)])
    with pytest.raises(InputError, match=r"probs\[2\] must be a tensor of shape \(3,\)"):
        bp.expected_latency([torch.ones(2), torch.ones(2), torch.ones(2)])
