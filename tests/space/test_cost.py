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
    blocks = sp.resolve(sp.preset(preset))
    cost = CostCounter().blocks(blocks)
    model = build_model(blocks)
    assert cost.flops == fvcore_flops(model, torch.zeros(1, 3, 224, 224))
    assert cost.params == count_params(model)


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
