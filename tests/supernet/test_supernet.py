"""The weight-sharing supernet: extracted paths compute exactly what the supernet computes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
import torch

from hwnas.errors import InputError
from hwnas.space.loader import load_space
from hwnas.supernet.samplers import constrained_uniform, fair_paths, uniform_paths
from hwnas.supernet.supernet import SuperNet
from hwnas.supernet.training import SupernetTrainConfig, step_rng, train_supernet
from hwnas.train.data import load_dataset
from hwnas.train.runs import RunDir
from tests.conftest import TOY_SPACE


def _searchable(candidate: str) -> bool:
    """Candidates of slots with decisions (fixed stem/head candidates are named ``s<i>_o``)."""
    return candidate.split("_o", 1)[1] != ""


def _randomize_bn(module):
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)


@pytest.mark.parametrize("sharing", ["separate", "entangled"])
@pytest.mark.parametrize("name", ["mobilenetv2", "proxyless", "ofa-mbv3", "mnasnet", "spos-shufflenet", "shufflenetv2"])
def test_extracted_path_equals_supernet(name, sharing):
    sp = load_space(name)
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=32, width_mult=0.5, num_classes=10, sharing=sharing)
    _randomize_bn(sn)
    rng = np.random.default_rng(0)
    x = torch.randn(2, 3, 32, 32)
    for mode in ("eval", "train"):
        getattr(sn, mode)()
        for _ in range(4):
            arch = sp.sample(rng, resolution=32, width_mult=0.5, num_classes=10)
            alone = getattr(sn.extract(arch), mode)()
            with torch.no_grad():
                torch.manual_seed(5)  # same dropout mask in train mode
                y_super = sn(x, arch)
                torch.manual_seed(5)
                y_alone = alone(x)
            assert torch.equal(y_super, y_alone)


def test_width_choices_share_weights_by_slicing():
    sp = load_space("mnasnet")
    sn = SuperNet(sp, resolution=32, width_mult=0.5, num_classes=10)
    arch = sp.preset("mnasnet_b1", resolution=32, width_mult=0.5, num_classes=10)
    narrow = dict(arch, choices={**arch["choices"], "b3_width": 0.75})
    wide = dict(arch, choices={**arch["choices"], "b3_width": 1.25})
    # same candidates (op, kernel, SE) whatever the width: the narrow path uses slices of the wide one
    assert sn.path_candidates(narrow) == sn.path_candidates(wide)
    a, b = sn.extract(narrow), sn.extract(wide)
    wa = dict(a.named_parameters())
    wb = dict(b.named_parameters())
    k = next(n for n in wa if wa[n].shape != wb[n].shape)
    assert torch.equal(wa[k], wb[k][tuple(slice(0, s) for s in wa[k].shape)])


@pytest.mark.parametrize("sharing,shared", [("entangled", True), ("separate", False)])
def test_se_choices_share_weights_when_entangled(sharing, shared):
    sp = load_space("mnasnet")
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=32, width_mult=0.5, num_classes=10, sharing=sharing)
    arch = sp.preset("mnasnet_b1", resolution=32, width_mult=0.5, num_classes=10)
    with_se = dict(arch, choices={**arch["choices"], "b3_se": 0.25})
    no_se = dict(arch, choices={**arch["choices"], "b3_se": 0})
    ca, cb = sn.path_candidates(with_se), sn.path_candidates(no_se)
    assert (ca == cb) is shared
    if not shared:
        return
    a, b = sn.extract(with_se), sn.extract(no_se)
    # blocks[5] is b3.0 (stem, b1 x1, b2 x3 before it): mbconv expand, depthwise, [SE], project
    wa = [t for n, t in a.blocks[5].named_parameters() if not n.startswith("body.2.")]  # SE is body.2
    wb = list(b.blocks[5].named_parameters())
    assert [n for n, _ in a.blocks[5].named_parameters() if n.startswith("body.2.")] == [
        "body.2.reduce.weight", "body.2.reduce.bias", "body.2.expand.weight", "body.2.expand.bias"]
    assert len(wa) == len(wb) == 9
    for ta, (nb, tb) in zip(wa, wb):
        assert torch.equal(ta, tb), nb


def test_fair_sampling_uses_every_candidate_exactly_once():
    sp = load_space("spos-shufflenet")  # every decision has 4 options
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10)
    sampler = fair_paths(sp)
    for step in range(3):
        paths = sampler(step_rng(0, step))
        assert paths.shape == (4, len(sp.decisions))
        used = [c for p in paths for c in sn.path_candidates(p)]
        searchable = [c for c in used if _searchable(c)]
        counts = {c: searchable.count(c) for c in set(searchable)}
        assert set(counts.values()) == {1}
        assert len(counts) == sum(sp.num_options)  # 20 decisions x 4 options


def test_fair_sampling_uneven_options_covers_each_at_least_once():
    sp = load_space("mobilenetv2")  # 6 or 7 options per decision
    paths = fair_paths(sp)(step_rng(3, 0))
    for d, n in enumerate(sp.num_options):
        counts = np.bincount(paths[:, d], minlength=n)
        assert counts.min() >= 1 and counts.max() <= 2


def test_fair_step_accumulates_gradients_then_one_update(tmp_path):
    sp = load_space("spos-shufflenet")
    ds = load_dataset("digits", limit=64)
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10)
    sn.to(memory_format=torch.channels_last)
    backward_calls: dict[str, int] = {}
    for name, module in sn.candidates.items():
        if not _searchable(name):
            continue
        p = next(module.parameters())
        p.register_hook(lambda g, name=name: backward_calls.__setitem__(name, backward_calls.get(name, 0) + 1))
    updates = []
    run = RunDir(tmp_path / "run", config={}, resume=False)
    cfg = SupernetTrainConfig(epochs=1, batch_size=64, lr=0.01)
    orig_step = torch.optim.SGD.step

    def counting_step(self, *a, **k):
        updates.append(1)
        return orig_step(self, *a, **k)

    torch.optim.SGD.step = counting_step
    try:
        train_supernet(sn, ds, fair_paths(sp), config=cfg, seed=0, run=run)
    finally:
        torch.optim.SGD.step = orig_step
    assert len(updates) == 1  # 64 examples / batch 64 = one step
    assert set(backward_calls.values()) == {1} and len(backward_calls) == 80  # every candidate trained exactly once


def test_uniform_sampler_shape():
    sp = load_space("proxyless")
    p = uniform_paths(sp)(np.random.default_rng(0))
    assert p.shape == (1, 21) and p.dtype == np.int64 and (p >= 0).all() and (p < np.asarray(sp.num_options)).all()


def _chi2_uniform_p(counts: np.ndarray) -> float:
    """p-value of Pearson's chi-square test that ``counts`` come from a uniform distribution."""
    return float(scipy.stats.chisquare(counts).pvalue)


@pytest.mark.parametrize("name", ["proxyless", "ofa-mbv3", "mobilenetv2"])  # 7; 3; 6 or 7 options per decision
def test_uniform_sampler_is_uniform_per_decision_and_independent(name):
    sp = load_space(name)
    n = np.asarray(sp.num_options)
    sample = uniform_paths(sp)
    rng = np.random.default_rng(0)
    draws = np.concatenate([sample(rng) for _ in range(6000)])  # 6000 single-path steps
    assert draws.shape == (6000, n.size)
    for d, k in enumerate(n):  # SPOS Sec. 3.2: every option of every decision equally likely
        counts = np.bincount(draws[:, d], minlength=k)
        assert counts.size == k and counts.min() > 0, sp.decisions[d].name
        assert _chi2_uniform_p(counts) > 1e-4, (sp.decisions[d].name, counts)
    # and independent: the joint of two decisions is uniform over the k0 * k1 pairs (a sampler that drew
    # one option index for all decisions would be uniform per decision, but not here)
    for a, b in ((0, 1), (0, n.size - 1)):
        pair = np.bincount(draws[:, a] * n[b] + draws[:, b], minlength=n[a] * n[b])
        assert _chi2_uniform_p(pair) > 1e-4, (a, b)
    # successive steps differ (a fresh draw per step, not one path repeated)
    assert len({tuple(r) for r in draws[:100]}) == 100


# toy space: l1 in {k3, k5}, l2 in {k3, skip}, l3 in {k3, k5, skip}, 12 paths; a latency of 1 per k3,
# 2 per k5 and 0 per skip; the window [2, 3] keeps 7 of them (worked out by hand):
_TOY_LATENCY = [np.array([1.0, 2.0]), np.array([1.0, 0.0]), np.array([1.0, 2.0, 0.0])]
_TOY_FEASIBLE = {(0, 0, 0), (0, 0, 2), (0, 1, 0), (0, 1, 1), (1, 0, 2), (1, 1, 0), (1, 1, 2)}


def _toy_accept(paths: np.ndarray) -> np.ndarray:
    lat = sum(table[paths[:, d]] for d, table in enumerate(_TOY_LATENCY))
    return (lat >= 2.0) & (lat <= 3.0)


def test_constrained_uniform_stays_in_the_window_and_is_uniform_over_it():
    sp = load_space(TOY_SPACE)
    assert list(sp.num_options) == [2, 2, 3]
    every = {tuple(p) for p in itertools.product(*(range(k) for k in sp.num_options))}
    assert {p for p in every if _toy_accept(np.array([p]))[0]} == _TOY_FEASIBLE  # the hand list
    calls = []

    def accept(paths):
        calls.append(paths.shape)
        return _toy_accept(paths)

    sample = constrained_uniform(sp, accept=accept, batch=4)
    rng = np.random.default_rng(0)
    got = [sample(rng) for _ in range(7000)]
    assert all(p.shape == (1, 3) for p in got)
    paths = [tuple(int(v) for v in p[0]) for p in got]
    assert set(paths) == _TOY_FEASIBLE  # only feasible paths, and every one of them
    counts = np.array([paths.count(p) for p in sorted(_TOY_FEASIBLE)])
    assert _chi2_uniform_p(counts) > 1e-4, counts  # uniform over the 7: about 1000 each
    assert all(shape == (4, 3) for shape in calls)  # the predicate sees whole batches
    # 7 of 12 paths feasible, 4 per round: a round finds none with probability (5/12)^4 = 3%
    assert 7000 < len(calls) < 7000 * 1.1


def test_constrained_uniform_gives_up_on_an_empty_window():
    sp = load_space(TOY_SPACE)
    never = constrained_uniform(sp, accept=lambda p: np.zeros(len(p), dtype=bool), batch=8, max_rounds=3)
    with pytest.raises(InputError, match="no path in 24 draws"):
        never(np.random.default_rng(0))
    only = constrained_uniform(sp, accept=lambda p: (p == [1, 1, 2]).all(axis=1), batch=64)
    assert all(tuple(only(np.random.default_rng(s))[0]) == (1, 1, 2) for s in range(20))


@pytest.mark.parametrize("name", ["proxyless", "ofa-mbv3"])
def test_weighted_forward_one_hot_is_the_path(name):
    sp = load_space(name)
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=32, width_mult=0.5, num_classes=10).eval()
    arch = sp.sample(np.random.default_rng(1), resolution=32, width_mult=0.5, num_classes=10)
    idx = sp.encode(arch)
    onehot = [torch.nn.functional.one_hot(torch.tensor(int(i)), n).float() for i, n in zip(idx, sp.num_options)]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sn.weighted_forward(x, onehot), sn(x, arch), atol=1e-6)


def test_weighted_forward_mixture_and_gate_gradients():
    sp = load_space("proxyless")
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    base = sp.encode(sp.sample(np.random.default_rng(2)))
    gates = [torch.nn.functional.one_hot(torch.tensor(int(i)), n).float() for i, n in zip(base, sp.num_options)]
    d = 3  # mix two options of one decision: its slot outputs 0.25·cand(o1)(h) + 0.75·cand(o2)(h)
    o1, o2 = (int(base[d]) + 1) % 7, (int(base[d]) + 2) % 7
    mix = torch.zeros(7)
    mix[o1], mix[o2] = 0.25, 0.75
    si = next(i for i, slot in enumerate(sn.slots) if d in slot.decisions)
    assert sn.slots[si].decisions == (d,)
    seen: list[tuple[int, torch.Tensor]] = []  # (slot, input) of every block run
    run_step = sn.run_step
    sn.run_step = lambda step, h: seen.append((step.slot, h)) or run_step(step, h)
    try:
        with torch.no_grad():
            mixed = sn.weighted_forward(x, gates[:d] + [mix] + gates[d + 1:])
    finally:
        del sn.run_step
    h_in = next(h for slot, h in seen if slot == si)  # what the mixed slot received
    h_out = next(h for slot, h in seen if slot > si)  # what it handed on: its output
    cand = []
    for o in (o1, o2):  # each candidate alone: the slot's block of the extracted single path with option o
        path = base.copy()
        path[d] = o
        model = sn.extract(path).eval()
        block = next(m for m, b in zip(model.blocks, model.specs) if b.slot == sn.slots[si].name)
        with torch.no_grad():
            cand.append(block(h_in))
    assert not torch.allclose(cand[0], cand[1], atol=1e-3)  # two really different candidates
    assert torch.allclose(h_out, 0.25 * cand[0] + 0.75 * cand[1], atol=1e-6)
    # gradient of the output w.r.t. an inactive gate entry is zero; w.r.t. active ones it is not
    g = torch.zeros(7, requires_grad=True)
    with torch.no_grad():
        g[o1] = 1.0
    y = sn.weighted_forward(x, gates[:d] + [g] + gates[d + 1:])
    y.sum().backward()
    assert g.grad[o1] != 0 and g.grad[o2] == 0  # o2 was not computed
    g2 = g.detach().clone().requires_grad_(True)
    compute = [[int(i)] for i in base]
    compute[d] = [o1, o2]  # ProxylessNAS arch step: both sampled paths run, one gate is 0
    y2 = sn.weighted_forward(x, gates[:d] + [g2] + gates[d + 1:], compute=compute)
    assert torch.allclose(y2, y)
    y2.sum().backward()
    assert g2.grad[o1] == g.grad[o1] and g2.grad[o2] != 0
    assert mixed.shape == (2, 10)


def test_entangled_candidates_share_kernels_by_centre_crop():
    sp = load_space("proxyless")
    sep = SuperNet(sp, resolution=32, width_mult=0.5, num_classes=10)
    ent = SuperNet(sp, resolution=32, width_mult=0.5, num_classes=10, sharing="entangled")
    assert len(ent.candidates) == len(sp.slots()) < len(sep.candidates)  # one module per slot
    arch = sp.preset("proxyless_mobile_ops", resolution=32, width_mult=0.5, num_classes=10)
    small = dict(arch, choices={**arch["choices"], "s3_l1": "e3_k3"})
    big = dict(arch, choices={**arch["choices"], "s3_l1": "e6_k7"})
    assert ent.path_candidates(small) == ent.path_candidates(big)


    def depthwise(arch):  # s3.0's depthwise kernel in the extracted model
        model = ent.extract(arch)
        i = next(i for i, b in enumerate(model.specs) if b.slot == "s3.0")
        return next(p for p in model.blocks[i].parameters() if p.dim() == 4 and p.shape[1] == 1)

    w_small, w_big = depthwise(small), depthwise(big)
    assert w_small.shape[-1] == 3 and w_big.shape[-1] == 7
    assert torch.equal(w_small, w_big[: w_small.shape[0], :, 2:5, 2:5])  # leading channels, centre 3x3
