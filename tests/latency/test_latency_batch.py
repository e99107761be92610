"""Vectorized prediction equals the per-arch path, on every shipped space; FLOPs/params from fvcore."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwnas.errors import InputError
from hwnas.latency.batch import BatchPredictor
from hwnas.latency.calibration import Calibration, table_fingerprint
from hwnas.latency.model import LatencyModel
from hwnas.latency.table import LatencyTable
from hwnas.space.blocks import op_key
from hwnas.space.cost import CostCounter
from hwnas.space.loader import load_space, space_names
from tests.latency.test_latency_model import HAND, K5, hand_table


def synthetic_table(space, *, resolution=None, width_mult=1.0, seed=0, drop=0):
    """A table with a random latency for every block of the space (``drop`` entries left out)."""
    rng = np.random.default_rng(seed)
    keys = sorted({op_key(b) for b in space.all_blocks(resolution=resolution, width_mult=width_mult)})
    keys = keys[drop:]
    return LatencyTable(device={"backend": "ort-cpu", "resolution": resolution or space.spec.resolution},
                        entries={k: {"median_ms": float(rng.uniform(0.05, 3.0))} for k in keys})


def test_toy_every_arch_by_hand(toy_space):
    bp = BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space)
    op_ms = {"k3": 2.0, "k5": 3.0, "skip": 0.0}
    combos = list(itertools.product(range(2), range(2), range(3)))
    idx = np.array(combos)
    expected = [1.0 + 0.5 + sum(op_ms[toy_space.decisions[d].options[o]] for d, o in enumerate(c)) for c in combos]
    assert bp.latency(idx) == pytest.approx(expected)
    assert bp.num_blocks(idx).tolist() == [2 + sum(toy_space.decisions[d].options[o] != "skip"
                                                   for d, o in enumerate(c)) for c in combos]
    assert bp.estimated == []


@pytest.mark.parametrize("name", space_names())
def test_batch_equals_per_arch_predict_with_calibration(name):
    sp = load_space(name)
    table = synthetic_table(sp, resolution=64)
    cal = Calibration(features=("lut_sum_ms", "num_blocks"), coef=(0.9, -0.02), intercept_ms=0.4,
                      table=table_fingerprint(table))
    model = LatencyModel.from_table(table, calibration=cal)
    bp = BatchPredictor.build(model, sp, resolution=64)
    rng = np.random.default_rng(1)
    archs = [sp.sample(rng, resolution=64) for _ in range(25)]
    idx = np.stack([sp.encode(a) for a in archs])
    per_arch = [model.predict(a, space=sp) for a in archs]
    assert bp.latency(idx) == pytest.approx([p.latency_ms for p in per_arch], rel=1e-12)
    assert bp.lut_sum(idx) == pytest.approx([p.lut_sum_ms for p in per_arch], rel=1e-12)
    assert bp.estimated == []


def test_flops_and_params_match_cost_counter(toy_space):
    bp = BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space)
    archs = [toy_space.preset("big"), toy_space.preset("small")]
    idx = np.stack([toy_space.encode(a) for a in archs])
    counter = CostCounter()
    costs = [counter.blocks(toy_space.resolve(a)) for a in archs]
    assert bp.flops(idx).tolist() == [c.flops for c in costs]
    assert bp.params(idx).tolist() == [c.params for c in costs]


def test_batch_reports_estimated_keys_and_strict(toy_space):
    model = LatencyModel.from_table(hand_table({k: v for k, v in HAND.items() if k != K5}))
    bp = BatchPredictor.build(model, toy_space)
    assert bp.estimated == [K5]
    with pytest.raises(InputError, match="strict"):
        BatchPredictor.build(model, toy_space, strict=True)


def test_bad_indices_are_refused(toy_space):
    bp = BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space)
    with pytest.raises(InputError, match=r"shape \(N, 3\)"):
        bp.latency(np.zeros((2, 4), dtype=int))
    with pytest.raises(InputError, match="decision l3"):
        bp.latency(np.array([[0, 0, 3]]))
    with pytest.raises(InputError, match="integers"):
        bp.latency(np.zeros((1, 3)))
    assert bp.latency(np.array([1, 0, 1])) == pytest.approx([1.0 + 3.0 + 2.0 + 3.0 + 0.5])  # one arch


def test_other_resolution_refused(toy_space):
    with pytest.raises(InputError, match="resolution"):
        BatchPredictor.build(LatencyModel.from_table(hand_table()), toy_space, resolution=16)
