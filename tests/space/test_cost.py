"""FLOPs per block (fvcore, cached) sum to fvcore on the whole built model."""

from __future__ import annotations

import pytest
import torch

from hwnas.compat import import_torchvision
from hwnas.space.build import build_model, count_params
from hwnas.space.cost import CostCounter, fvcore_flops
from hwnas.space.loader import load_space, space_names

PRESETS = [(n, p) for n in space_names() for p in load_space(n).presets]


@pytest.mark.parametrize("space,preset", PRESETS)
def test_block_sum_equals_whole_model_fvcore(space, preset):
    sp = load_space(space)
    arch = sp.preset(preset)
    blocks = sp.resolve(arch)
    cost = CostCounter().blocks(blocks)
    model = build_model(blocks)
    r = arch["resolution"]
    assert cost.flops == fvcore_flops(model, torch.zeros(1, 3, r, r))
    assert cost.params == count_params(model)


@pytest.mark.parametrize("space", space_names())
def test_meta_count_equals_fvcore_on_sampled_blocks(space):
    # the shape-only count (meta device) against fvcore's JIT trace, 2 random archs' blocks per space
    import numpy as np

    from hwnas.space.cost import meta_flops
    from hwnas.space.ops import make_module

    sp = load_space(space)
    rng = np.random.default_rng(1)
    blocks = {b for _ in range(2) for b in sp.resolve(sp.sample(rng, resolution=32, width_mult=1.0, num_classes=10))
              if b.op != "skip"}
    for b in blocks:
        shape = (1, b.cin, b.hw, b.hw)
        with torch.device("meta"):
            m = make_module(b)
        torch.manual_seed(0)
        assert meta_flops(m, shape) == fvcore_flops(make_module(b), torch.zeros(shape)), b


def test_meta_count_refuses_a_layer_without_formula():
    from hwnas.space.cost import meta_flops

    with torch.device("meta"):
        m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Upsample(scale_factor=2))
    assert meta_flops(m, (1, 3, 8, 8)) is None  # CostCounter then traces it with fvcore
    with torch.device("meta"):
        conv = torch.nn.Conv2d(4, 8, 3, padding=1, groups=2)
    assert meta_flops(conv, (1, 4, 8, 8)) == 8 * 8 * 8 * 2 * 9  # out elements x (C_in / groups) x k x k


def test_mobilenet_v2_flops_match_torchvision():
    tv = import_torchvision()
    reference = fvcore_flops(tv.models.mobilenet_v2(), torch.zeros(1, 3, 224, 224))
    sp = load_space("mobilenetv2")
    ours = CostCounter().blocks(sp.resolve(sp.preset("mobilenet_v2"))).flops
    assert abs(reference - 314.2e6) / 314.2e6 < 0.001
    assert abs(ours - reference) / reference < 0.01
    assert ours == reference  # same structure, same count


def test_cost_is_cached_per_block_config(toy_space):
    counter = CostCounter()
    a = toy_space.preset("big")
    counter.blocks(toy_space.resolve(a))
    n = len(counter)
    counter.blocks(toy_space.resolve(a))
    assert len(counter) == n  # no new traces


def test_toy_block_flops_by_hand(toy_space):
    # stem: 3x3 conv 3->8 on 8x8 = 64 * 8 * 27 MACs, plus eval-mode affine BN, which fvcore counts
    # as 2 per output element (scale and shift) = 2 * 64 * 8.
    blocks = toy_space.resolve(toy_space.preset("small"))
    stem = CostCounter().block(blocks[0])
    assert stem.flops == 64 * 8 * 27 + 2 * 64 * 8
    assert stem.params == 8 * 27 + 2 * 8
    # classifier: global pool over 8x8x8 (fvcore counts 512) + linear 8->4.
    head = CostCounter().block(blocks[-1])
    assert head.flops == 8 * 8 * 8 + 8 * 4
    assert head.params == 8 * 4 + 4
