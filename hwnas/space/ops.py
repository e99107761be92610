"""PyTorch modules for every block op; ``make_module`` is the one way to build a block.

The structures follow the reference implementations exactly so that presets reproduce published
parameter counts: MobileNetV2 inverted residuals (Sandler et al., 2018; torchvision), ProxylessNAS
``MBInvertedConvLayer`` (Cai et al., 2019), Once-for-All MobileNetV3 blocks with squeeze-excite and
h-swish (Cai et al., 2020; Howard et al., 2019), MnasNet ops (Tan et al., 2019, Sec. 4.1) and
ShuffleNetV2 / SPOS units (Ma et al., 2018; Guo et al., 2020).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from hwnas.space.blocks import Block

MODULE_BUILDERS: dict[str, Callable[[Block], nn.Module]] = {}


def register(op: str) -> Callable[[Callable[[Block], nn.Module]], Callable[[Block], nn.Module]]:
    """Registers the module builder of an op."""

    def deco(fn: Callable[[Block], nn.Module]) -> Callable[[Block], nn.Module]:
        MODULE_BUILDERS[op] = fn
        return fn

    return deco


def make_module(block: Block) -> nn.Module:
    """Builds the ``nn.Module`` of one block (freshly initialized)."""
    module = MODULE_BUILDERS[block.op](block)
    init_weights(module)
    return module


def init_weights(module: nn.Module) -> None:
    """He-normal (fan-out) convolutions, unit batch norms, N(0, 0.01) linear layers (torchvision's scheme)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def activation(name: str) -> nn.Module:
    """The activation module for a name in ``hwnas.space.blocks.ACTIVATIONS``."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}")


def conv_bn_act(
    cin: int,
    cout: int,
    *,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: str = "none",
    bn: bool = True,
    bias: bool = False,
    eps: float = 1e-5,
) -> nn.Sequential:
    """Conv (same padding) → BatchNorm → activation, as one ``nn.Sequential``."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=bias)]
    if bn:
        layers.append(nn.BatchNorm2d(cout, eps=eps))
    if act != "none":
        layers.append(activation(act))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): global pool → 1x1 reduce → ReLU → 1x1 expand → gate."""

    def __init__(self, channels: int, reduced: int, gate: str) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid() if gate == "hsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N, C, H, W
        s = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))  # N, C, 1, 1
        return x * s


class Residual(nn.Module):
    """``x + body(x)`` when ``enabled``, else ``body(x)``."""

    def __init__(self, body: nn.Module, *, enabled: bool) -> None:
        super().__init__()
        self.body = body
        self.enabled = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.enabled else y


def _se(b: Block, channels: int) -> list[nn.Module]:
    return [SqueezeExcite(channels, b.se, b.se_gate)] if b.se > 0 else []


@register("mbconv")
def _mbconv(b: Block) -> nn.Module:
    """Inverted residual: [1x1 expand] → kxk depthwise → [SE] → 1x1 linear project (MobileNetV2 Fig. 3b)."""
    layers: list[nn.Module] = []
    if b.mid != b.cin:
        layers.append(conv_bn_act(b.cin, b.mid, kernel=1, act=b.act, eps=b.bn_eps))
    layers.append(conv_bn_act(b.mid, b.mid, kernel=b.kernel, stride=b.stride, groups=b.mid, act=b.act, eps=b.bn_eps))
    layers += _se(b, b.mid)
    layers.append(conv_bn_act(b.mid, b.cout, kernel=1, eps=b.bn_eps))
    return Residual(nn.Sequential(*layers), enabled=b.residual)


@register("sepconv")
def _sepconv(b: Block) -> nn.Module:
    """Depthwise-separable conv (MnasNet SepConv): kxk depthwise → [SE] → 1x1 linear project."""
    layers: list[nn.Module] = [
        conv_bn_act(b.cin, b.cin, kernel=b.kernel, stride=b.stride, groups=b.cin, act=b.act, eps=b.bn_eps)
    ]
    layers += _se(b, b.cin)
    layers.append(conv_bn_act(b.cin, b.cout, kernel=1, eps=b.bn_eps))
    return Residual(nn.Sequential(*layers), enabled=b.residual)


@register("conv")
def _conv(b: Block) -> nn.Module:
    """Regular kxk convolution → [BN] → activation → [SE] (stems, heads, MnasNet ConvOp)."""
    body = conv_bn_act(b.cin, b.cout, kernel=b.kernel, stride=b.stride, act=b.act, bn=b.bn, bias=b.bias, eps=b.bn_eps)
    if b.se > 0:
        body = nn.Sequential(*body, *_se(b, b.cout))
    return Residual(body, enabled=b.residual)  # same structure with or without the shortcut


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle (Zhang et al., 2018, Sec. 3.1): N, C, H, W → N, C, H, W."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (Ma et al., 2018, Fig. 3c/d) with a plain or Xception main branch (SPOS).

    Stride 1: the input is split in halves; the first passes through, the second goes through the
    main branch. Stride 2: a projection branch (kxk depthwise stride 2 → 1x1, ``proj`` channels) and
    the main branch both see the whole input. Outputs are concatenated and channel-shuffled.
    """

    def __init__(self, b: Block) -> None:
        super().__init__()
        self.stride = b.stride
        main_in = b.cin if b.stride == 2 else b.cin // 2
        main_out = b.cout - (b.proj if b.stride == 2 else b.cin // 2)
        eps = b.bn_eps
        if b.op == "shuffle":
            self.main = nn.Sequential(
                conv_bn_act(main_in, b.mid, kernel=1, act="relu", eps=eps),
                conv_bn_act(b.mid, b.mid, kernel=b.kernel, stride=b.stride, groups=b.mid, eps=eps),
                conv_bn_act(b.mid, main_out, kernel=1, act="relu", eps=eps),
            )
        else:  # xception: three depthwise 3x3 + pointwise pairs
            self.main = nn.Sequential(
                conv_bn_act(main_in, main_in, kernel=b.kernel, stride=b.stride, groups=main_in, eps=eps),
                conv_bn_act(main_in, b.mid, kernel=1, act="relu", eps=eps),
                conv_bn_act(b.mid, b.mid, kernel=b.kernel, groups=b.mid, eps=eps),
                conv_bn_act(b.mid, b.mid, kernel=1, act="relu", eps=eps),
                conv_bn_act(b.mid, b.mid, kernel=b.kernel, groups=b.mid, eps=eps),
                conv_bn_act(b.mid, main_out, kernel=1, act="relu", eps=eps),
            )
        self.proj: nn.Module | None = None
        if b.stride == 2:
            self.proj = nn.Sequential(
                conv_bn_act(b.cin, b.cin, kernel=b.kernel, stride=2, groups=b.cin, eps=eps),
                conv_bn_act(b.cin, b.proj, kernel=1, act="relu", eps=eps),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N, C, H, W
        if self.proj is None:
            keep, x2 = x.chunk(2, dim=1)
            out = torch.cat((keep, self.main(x2)), dim=1)
        else:
            out = torch.cat((self.proj(x), self.main(x)), dim=1)
        return channel_shuffle(out, 2)


register("shuffle")(ShuffleUnit)
register("xception")(ShuffleUnit)


@register("skip")
def _skip(b: Block) -> nn.Module:
    return nn.Identity()


@register("maxpool")
def _maxpool(b: Block) -> nn.Module:
    return nn.MaxPool2d(b.kernel, b.stride, b.kernel // 2)


@register("avgpool")
def _avgpool(b: Block) -> nn.Module:
    return nn.AdaptiveAvgPool2d(1)


class Classifier(nn.Module):
    """[Global average pool] → flatten → dropout → linear: N, C, H, W → N, classes."""

    def __init__(self, b: Block) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1) if b.pool else nn.Identity()
        self.dropout = nn.Dropout(b.dropout)
        self.linear = nn.Linear(b.cin, b.cout, bias=b.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(self.pool(x), 1)))


register("classifier")(Classifier)
