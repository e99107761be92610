"""Architectures are plain JSON; sampling, mutation and crossover always yield valid ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import InputError
from hwnas.space.blocks import op_key
from hwnas.space.loader import load_space, space_names

SPACES = {n: load_space(n) for n in space_names()}
space_st = st.sampled_from(sorted(SPACES))
seed_st = st.integers(0, 2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(name=space_st, seed=seed_st, resolution=st.sampled_from([32, 64, 224]))
def test_random_arch_is_valid_and_round_trips_json(name, seed, resolution):
    sp = SPACES[name]
    arch = sp.sample(np.random.default_rng(seed), resolution=resolution)
    again = sp.validate_arch(json.loads(json.dumps(arch)))
    assert again == arch
    blocks = sp.resolve(again)
    assert blocks[0].hw == resolution and blocks[-1].op == "classifier"
    if sp.kind == "chain":
        for a, b in zip(blocks, blocks[1:]):  # every block consumes what the previous produced
            assert b.cin == a.cout and b.hw == a.out_hw
        return
    shapes = {"": (blocks[0].cin, resolution)}  # register → (channels, hw) as written so far
    for b in blocks:  # every block reads registers written before it, at its own input shape
        ins = [shapes[r] for r in (b.src or ("",)) if r in shapes or b.op != "concat"]
        if b.op == "concat":
            assert all(c * len(b.src) == b.cin and hw == b.hw for c, hw in ins)
        else:
            assert ins == [(b.cin, b.hw)]
        shapes[b.dst] = (b.cout, b.out_hw)


@settings(max_examples=60, deadline=None)
@given(name=space_st, seed=seed_st)
def test_mutation_and_crossover_stay_valid(name, seed):
    sp = SPACES[name]
    rng = np.random.default_rng(seed)
    a, b = sp.sample(rng), sp.sample(rng)
    m = sp.mutate(a, rng, prob=0.2)
    assert sp.validate_arch(m) == m
    assert any(m["choices"][k] != a["choices"][k] for k in a["choices"])  # min_changes=1
    c = sp.crossover(a, b, rng)
    assert sp.validate_arch(c) == c
    assert all(c["choices"][k] in (a["choices"][k], b["choices"][k]) for k in c["choices"])


@settings(max_examples=30, deadline=None)
@given(name=space_st, seed=seed_st)
def test_encode_decode_and_canonical(name, seed):
    sp = SPACES[name]
    arch = sp.sample(np.random.default_rng(seed))
    assert sp.decode(sp.encode(arch)) == arch
    canon = sp.canonical(arch)
    assert [op_key(b) for b in sp.resolve(canon)] == [op_key(b) for b in sp.resolve(arch)]


def test_inactive_decisions_of_a_depth_cut():
    sp = SPACES["ofa-mbv3"]
    arch = sp.preset("ofa_min")  # depth 2 everywhere: layers 3 and 4 are inactive
    active = sp.active_decisions(arch)
    assert "s1_l2_kernel" in active and "s1_l3_kernel" not in active and "s1_depth" in active


def test_sampling_is_uniform_per_decision():
    sp = SPACES["proxyless"]
    rng = np.random.default_rng(0)
    counts = np.zeros(7)
    for _ in range(3500):
        counts[sp.encode(sp.sample(rng))[1]] += 1  # s1_l2 has 7 options
    assert np.all(np.abs(counts / 3500 - 1 / 7) < 0.03)


def test_toy_space_blocks_by_hand(toy_space):
    blocks = toy_space.resolve(toy_space.preset("big"))
    assert [op_key(b) for b in blocks] == [
        "Conv-input:8x8x3-output:8x8x8",
        "expanded_conv-input:8x8x8-output:8x8x8-expand:16-kernel:5-stride:1-idskip:1-se:0-hs:0",
        "expanded_conv-input:8x8x8-output:8x8x8-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0",
        "expanded_conv-input:8x8x8-output:8x8x8-expand:16-kernel:5-stride:1-idskip:1-se:0-hs:0",
        "Logits-input:8x8x8-output:4",
    ]
    assert toy_space.size_log10() == pytest.approx(np.log10(12))


@pytest.mark.parametrize("mutation,field", [
    (lambda a: a["choices"].pop("l1"), "choices.l1"),
    (lambda a: a["choices"].update(l1="k9"), "choices.l1"),
    (lambda a: a["choices"].update(bogus="k3"), "choices.bogus"),
    (lambda a: a.update(resolution="big"), "resolution"),
    (lambda a: a.update(space="other"), "space"),
    (lambda a: a.update(width_mult=-1), "width_mult"),
    (lambda a: a.update(extra=1), "extra"),
])
def test_malformed_arch_names_the_field(toy_space, mutation, field):
    arch = toy_space.preset("big")
    mutation(arch)
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        toy_space.validate_arch(arch)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_slots_reproduce_resolve(name):
    sp = SPACES[name]
    tables = {s.name: (s, sp.slot_blocks(s, resolution=32)) for s in sp.slots()}
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = sp.sample(rng, resolution=32)
        idx = sp.encode(arch)
        dead = sp.dead_slots(idx)  # cell edges that reach no output
        from_slots = [tab[tuple(int(idx[d]) for d in s.decisions)] for i, (s, tab) in enumerate(tables.values())
                      if i not in dead]
        assert [b for b in from_slots if b is not None] == sp.resolve(arch)
    assert set(sp.all_blocks(resolution=32)) >= {b for b in sp.resolve(arch) if op_key(b) is not None}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_parse_key_inverts_op_key(name):
    from hwnas.space.blocks import parse_key

    for b in SPACES[name].all_blocks(resolution=64):
        f = parse_key(op_key(b))
        assert (f["cin"], f["cout"], f["hw"]) == (b.cin, b.cout, b.hw)
        if b.op == "mbconv":
            assert f["op"] == "mbconv" and (f["expand"], f["kernel"], f["stride"]) == (b.mid, b.kernel, b.stride)
            assert (f["idskip"], f["se"], f["hs"]) == (int(b.residual), int(b.se > 0), int(b.act == "hswish"))
        elif not b.name:
            assert f["op"] == b.op


def test_parse_key_rejects_garbage():
    from hwnas.space.blocks import parse_key

    for bad in ("Conv", "Conv-input:1x1-output:2", "expanded_conv-input:axbxc-output:1x1x1", "x-input:1x1x1"):
        with pytest.raises(ValueError):
            parse_key(bad)
