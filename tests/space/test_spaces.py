"""Every shipped space loads; presets build, run and match published parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from hwnas.compat import import_torchvision
from hwnas.space.build import build_model, count_params
from hwnas.space.cost import CostCounter, fvcore_flops
from hwnas.space.loader import load_space, space_names

PRESETS = [(n, p) for n in space_names() for p in load_space(n).presets]


def test_shipped_spaces():
    assert set(space_names()) >= {"mobilenetv2", "proxyless", "proxyless-mobile", "proxyless-gpu", "proxyless-cpu",
                                  "ofa-mbv3", "ofa-mbv3-w10", "mnasnet", "spos-shufflenet", "shufflenetv2"}


# ---- hand-derived counts (independent of CostCounter and of hwnas's modules) -------------------------


class _Tally:
    """Parameters and fvcore-convention FLOPs of a network, summed layer by layer by the test itself.

    fvcore counts one multiply-add once (conv: out_side² · cout · cin/groups · k², linear: in · out,
    biases not counted), an eval-mode affine batch norm as 2 per output element and an adaptive
    average pool as 1 per input element; activations, SE gating, adds, max pooling, concatenation and
    channel shuffles count nothing. ``macs`` alone is the papers' convention (conv and linear layers).
    """

    def __init__(self) -> None:
        self.params = self.macs = self.bn = self.pool = 0

    def conv(self, cin: int, cout: int, k: int, side: int, *, groups: int = 1, bn: bool = True,
             bias: bool = False) -> None:  # side: output feature-map side
        w = cout * (cin // groups) * k * k
        self.params += w + (cout if bias else 0) + (2 * cout if bn else 0)
        self.macs += w * side * side
        self.bn += cout * side * side if bn else 0

    def linear(self, cin: int, cout: int, *, bias: bool) -> None:
        self.params += cin * cout + (cout if bias else 0)
        self.macs += cin * cout

    def avgpool(self, c: int, side: int) -> None:
        self.pool += c * side * side

    @property
    def flops(self) -> int:
        return self.macs + 2 * self.bn + self.pool


def _ofa_make_divisible(v: float, divisor: int = 8) -> int:
    """``ofa.utils.make_divisible`` (mit-han-lab/once-for-all), written out again here."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _down(side: int, stride: int) -> int:
    return (side - 1) // stride + 1  # odd kernel, padding k // 2


def _ofa_mbv3_layers(width_mult: float, *, kernel: int, expand: int, depth: int):
    """The layers of an OFA-MobileNetV3 subnet with one kernel, expansion and depth everywhere:
    ``(cin, kernel, mid, cout, se, act, stride)`` per MBConv, and the stem, final-expand and feature-mix
    widths (``OFAMobileNetV3.__init__`` and ``DynamicMBConvLayer.get_active_subnet``: base widths
    16, 16, 24, 40, 80, 112, 160, 960, 1280 times the width, stage strides 1, 2, 2, 2, 1, 2, SE in the
    third, fifth and sixth stage, h-swish from the fourth; mid = make_divisible(round(cin · e)), SE
    reduce = make_divisible(mid // 4))."""
    w = [_ofa_make_divisible(b * width_mult) for b in (16, 16, 24, 40, 80, 112, 160, 960, 1280)]
    layers = [(w[0], 3, w[0], w[1], False, "RE", 1)]  # first block: expand 1, no SE
    cin = w[1]
    for cout, s, se, act in zip(w[2:7], (2, 2, 2, 1, 2), (False, True, False, True, True),
                                ("RE", "RE", "HS", "HS", "HS")):
        for i in range(depth):
            layers.append((cin, kernel, _ofa_make_divisible(round(cin * expand)), cout, se, act, s if i == 0 else 1))
            cin = cout
    return w[0], layers, w[7], w[8]


def _ofa_mbv3_counts(width_mult: float, *, kernel: int, expand: int, depth: int, resolution: int) -> _Tally:
    stem, layers, final_expand, last = _ofa_mbv3_layers(width_mult, kernel=kernel, expand=expand, depth=depth)
    t = _Tally()
    side = _down(resolution, 2)
    t.conv(3, stem, 3, side)  # first_conv: 3x3 stride 2, BN, h-swish
    for cin, k, mid, cout, se, _, stride in layers:
        out = _down(side, stride)
        if mid != cin:
            t.conv(cin, mid, 1, side)  # inverted bottleneck
        t.conv(mid, mid, k, out, groups=mid)  # depthwise
        if se:  # global pool, 1x1 reduce (bias), 1x1 expand (bias), h-sigmoid
            r = _ofa_make_divisible(mid // 4)
            t.avgpool(mid, out)
            t.conv(mid, r, 1, 1, bn=False, bias=True)
            t.conv(r, mid, 1, 1, bn=False, bias=True)
        t.conv(mid, cout, 1, out)  # point linear
        side = out
    t.conv(layers[-1][3], final_expand, 1, side)  # final_expand_layer: 1x1, BN, h-swish
    t.avgpool(final_expand, side)
    t.conv(final_expand, last, 1, 1, bn=False)  # feature_mix_layer: 1x1, no BN, no bias
    t.linear(last, 1000, bias=True)  # classifier (dropout 0.1)
    return t


SPOS_KERNEL = {"shuffle3": 3, "shuffle5": 5, "shuffle7": 7, "xception": 3}


def _spos_counts(choice: str, *, resolution: int) -> _Tally:
    """SPOS ShuffleNetV2 one-shot net with one choice block everywhere (megvii-model/SinglePathOneShot,
    ``ShuffleNetV2_OneShot``, ``Shufflenet``, ``Shuffle_Xception``): 3x3 stride-2 stem to 16 channels
    and *no* max pool (Guo et al. 2020, Table 1: the first 64-wide block sees 112², the 640-wide stage
    runs at 7²), stages 64, 160, 320, 640 x 4, 4, 8, 4; mid = out // 2; stride 1 splits the input, the
    main branch maps in/2 → out - in/2; stride 2 runs the main branch on the whole input to out - in and
    a projection (k x k depthwise stride 2, 1x1 in → in); 1x1 conv to 1024, global pool, linear without
    bias."""
    k = SPOS_KERNEL[choice]
    t = _Tally()
    side = _down(resolution, 2)
    t.conv(3, 16, 3, side)
    cin = 16
    for cout, repeat in zip((64, 160, 320, 640), (4, 4, 8, 4)):
        for i in range(repeat):
            stride = 2 if i == 0 else 1
            inp = cin if stride == 2 else cin // 2
            mid, out = cout // 2, _down(side, stride)
            if choice == "xception":  # dw 3x3 (stride), pw, dw, pw, dw, pw
                t.conv(inp, inp, 3, out, groups=inp)
                t.conv(inp, mid, 1, out)
                t.conv(mid, mid, 3, out, groups=mid)
                t.conv(mid, mid, 1, out)
                t.conv(mid, mid, 3, out, groups=mid)
                t.conv(mid, cout - inp, 1, out)
            else:  # pw, dw k x k (stride), pw
                t.conv(inp, mid, 1, side)
                t.conv(mid, mid, k, out, groups=mid)
                t.conv(mid, cout - inp, 1, out)
            if stride == 2:
                t.conv(cin, cin, k, out, groups=cin)
                t.conv(cin, cin, 1, out)
            cin, side = cout, out
    t.conv(cin, 1024, 1, side)
    t.avgpool(1024, side)
    t.linear(1024, 1000, bias=False)
    return t


_OFA = {"ofa_max": {"kernel": 7, "expand": 6, "depth": 4}, "ofa_min": {"kernel": 3, "expand": 3, "depth": 2}}
HAND_COUNTS = {
    **{("ofa-mbv3", p): (lambda r, c=c: _ofa_mbv3_counts(1.2, resolution=r, **c)) for p, c in _OFA.items()},
    **{("ofa-mbv3-w10", p): (lambda r, c=c: _ofa_mbv3_counts(1.0, resolution=r, **c)) for p, c in _OFA.items()},
    ("spos-shufflenet", "all_shuffle3"): lambda r: _spos_counts("shuffle3", resolution=r),
}


def test_hand_counts_by_hand():
    # the tallies themselves, against numbers worked out on paper
    t = _Tally()
    t.conv(3, 24, 3, 112)  # OFA w1.2 stem at 224: 3x3 conv 3 -> 24, BN
    assert (t.params, t.macs, t.flops) == (648 + 48, 112 * 112 * 648, 112 * 112 * (648 + 2 * 24))
    t.linear(1536, 1000, bias=True)
    assert (t.params, t.macs) == (696 + 1_537_000, 112 * 112 * 648 + 1_536_000)
    assert [_ofa_make_divisible(16 * 1.2), _ofa_make_divisible(28.8), _ofa_make_divisible(112 * 1.2),
            _ofa_make_divisible(816 // 4)] == [24, 32, 136, 208]
    # pinned totals: Once-for-All w1.0's largest subnet has 7.66M parameters, its smallest 3.41M;
    # SPOS all-shuffle3 3.15M parameters and 296M multiply-adds at 224
    assert _ofa_mbv3_counts(1.0, resolution=224, **_OFA["ofa_max"]).params == 7_664_760
    assert _ofa_mbv3_counts(1.0, resolution=224, **_OFA["ofa_min"]).params == 3_410_792
    spos = _spos_counts("shuffle3", resolution=224)
    assert (spos.params, spos.macs) == (3_154_880, 295_842_496)


@pytest.mark.parametrize("space,preset", PRESETS)
@pytest.mark.parametrize("resolution", [None, 32])
def test_preset_builds_and_runs(space, preset, resolution):
    sp = load_space(space)
    arch = sp.preset(preset, resolution=resolution)
    blocks = sp.resolve(arch)
    model = build_model(blocks).eval()
    r = arch["resolution"]
    with torch.no_grad():
        y = model(torch.randn(2, 3, r, r).contiguous(memory_format=torch.channels_last))
    assert y.shape == (2, sp.spec.num_classes)
    assert torch.isfinite(y).all()
    cut = sp.kind == "cell" and not any(b.dst for b in blocks if b.op != "concat")  # no live edge: zeros
    assert cut or (y[0] - y[1]).abs().max() > 1e-3 * y.abs().max()  # the output depends on the input
    if (space, preset) in HAND_COUNTS:  # the others: torchvision and ProxylessNAS-log tests below
        ref = HAND_COUNTS[space, preset](r)
        assert count_params(model) == ref.params
        if space != "spos-shufflenet":  # its FLOPs: test_spos_flops_match_the_paper_backbone
            assert CostCounter().blocks(blocks).flops == ref.flops


@pytest.mark.xfail(strict=True, reason="search_spaces/spos-shufflenet.json has a stride-2 max pool after the stem "
                   "that SPOS does not have (Table 1: 112² into stage 1, 7² at the end): FLOPs come out ~3.5x low")
@pytest.mark.parametrize("resolution", [224, 32])
def test_spos_flops_match_the_paper_backbone(resolution):
    sp = load_space("spos-shufflenet")
    for choice in SPOS_KERNEL:
        arch = sp.preset("all_shuffle3", resolution=resolution)
        arch = dict(arch, choices={d: choice for d in arch["choices"]})
        cost = CostCounter().blocks(sp.resolve(arch))
        ref = _spos_counts(choice, resolution=resolution)
        assert cost.params == ref.params
        assert cost.flops == ref.flops, choice


@pytest.mark.parametrize("choice", sorted(SPOS_KERNEL))
def test_spos_choice_blocks_match_hand_parameter_counts(choice):
    sp = load_space("spos-shufflenet")
    arch = sp.preset("all_shuffle3")
    arch = dict(arch, choices={d: choice for d in arch["choices"]})
    assert count_params(build_model(sp.resolve(arch))) == _spos_counts(choice, resolution=224).params


@pytest.mark.parametrize("space,width", [("ofa-mbv3", 1.2), ("ofa-mbv3-w10", 1.0)])
@pytest.mark.parametrize("preset", sorted(_OFA))
def test_ofa_presets_match_torchvision_mobilenet_v3_blocks(space, width, preset):
    # the same subnet assembled from torchvision's MobileNetV3 blocks (InvertedResidual, SqueezeExcitation);
    # torchvision's head is Linear(1152, 1536) with a bias where OFA's feature mix is a bias-free 1x1 conv
    mbv3 = import_torchvision().models.mobilenetv3
    _, layers, final_expand, last = _ofa_mbv3_layers(width, **_OFA[preset])
    cfg = [mbv3.InvertedResidualConfig(cin, k, mid, cout, se, act, s, 1, 1.0)
           for cin, k, mid, cout, se, act, s in layers]
    ref = mbv3.MobileNetV3(cfg, last_channel=last)
    assert ref.features[-1][0].out_channels == final_expand  # 6 x the last stage width, as in OFA
    sp = load_space(space)
    blocks = sp.resolve(sp.preset(preset))
    cost = CostCounter().blocks(blocks)
    assert cost.params == count_params(ref) - last
    assert cost.flops == fvcore_flops(ref, torch.zeros(1, 3, 224, 224))
    assert cost.params == _ofa_mbv3_counts(width, resolution=224, **_OFA[preset]).params


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
