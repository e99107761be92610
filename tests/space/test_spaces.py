"""Every shipped space loads; presets build, run and match published parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from hwnas.compat import import_torchvision
from hwnas.space.build import build_model, count_params
from hwnas.space.loader import load_space, space_names

PRESETS = [(n, p) for n in space_names() for p in load_space(n).presets]


def test_shipped_spaces():
    assert set(space_names()) >= {"mobilenetv2", "proxyless", "proxyless-mobile", "proxyless-gpu", "proxyless-cpu",
                                  "ofa-mbv3", "ofa-mbv3-w10", "mnasnet", "spos-shufflenet", "shufflenetv2"}


@pytest.mark.parametrize("space,preset", PRESETS)
@pytest.mark.parametrize("resolution", [None, 32])
def test_preset_builds_and_runs(space, preset, resolution):
    sp = load_space(space)
    arch = sp.preset(preset, resolution=resolution)
    model = build_model(sp.resolve(arch)).eval()
    r = arch["resolution"]
    with torch.no_grad():
        y = model(torch.randn(2, 3, r, r).contiguous(memory_format=torch.channels_last))
    assert y.shape == (2, 1000)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("space,preset,factory", [
    ("mobilenetv2", "mobilenet_v2", "mobilenet_v2"),
    ("mnasnet", "mnasnet_b1", "mnasnet1_0"),
    ("shufflenetv2", "shufflenet_v2_x1_0", "shufflenet_v2_x1_0"),
])
def test_exact_torchvision_parameter_counts(space, preset, factory):
    tv = import_torchvision()
    expected = count_params(getattr(tv.models, factory)())
    sp = load_space(space)
    assert count_params(build_model(sp.resolve(sp.preset(preset)))) == expected
    assert expected == {"mobilenet_v2": 3_504_872, "mnasnet1_0": 4_383_312, "shufflenet_v2_x1_0": 2_278_604}[factory]


@pytest.mark.parametrize("space,preset,millions", [
    ("proxyless-mobile", "proxyless_mobile", 4.08),  # mit-han-lab/proxylessnas logs/imagenet_mobile_log.txt
    ("proxyless-gpu", "proxyless_gpu", 7.12),
    ("proxyless-cpu", "proxyless_cpu", 4.36),
])
def test_proxyless_released_nets_match_logged_params(space, preset, millions):
    sp = load_space(space)
    n = count_params(build_model(sp.resolve(sp.preset(preset))))
    assert abs(n / 1e6 - millions) <= 0.01


def test_ofa_space_size_matches_paper():
    # Once-for-All Sec. 3.1: "roughly 2 x 10^19 different neural network architectures".
    sp = load_space("ofa-mbv3")
    per_stage = sum(9 ** d for d in (2, 3, 4))
    assert sp.size_log10() == pytest.approx(5 * math.log10(per_stage), abs=1e-9)
    assert 2e19 * 0.9 < 10 ** sp.size_log10() < 2e19 * 1.1


def test_width_mult_and_resolution_shrink_the_model():
    sp = load_space("mobilenetv2")
    full = sp.preset("mobilenet_v2")
    small = sp.preset("mobilenet_v2", resolution=32, width_mult=0.5, num_classes=10)
    bs = sp.resolve(small)
    assert bs[0].hw == 32 and bs[0].cout == 16 and bs[-1].cout == 10
    assert count_params(build_model(bs)) < count_params(build_model(sp.resolve(full))) / 3
