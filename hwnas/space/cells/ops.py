"""Candidate ops of the cell search spaces (NAS-Bench-201 and DARTS) and their registry.

NAS-Bench-201 (Dong & Yang, ICLR 2020, Sec. 2.1): ``nor_conv_kxk`` is ReLU → Conv → BN,
``avg_pool_3x3`` is a 3x3 average pool (stride 1, padding 1, padding not counted),
``skip_connect`` the identity and ``none`` the zero op; no op inside a cell reduces.

DARTS (Liu et al., ICLR 2019, Sec. 3.1.1 and Appendix A.1): 3x3 max and average pooling,
identity (a factorized reduction where the edge has stride 2), separable convolutions 3x3 and 5x5
(ReLU → depthwise → pointwise → BN, applied twice, the first with the edge's stride), dilated
separable convolutions 3x3 and 5x5 (ReLU → depthwise dilated 2 → pointwise → BN) and zero.
Cell inputs are preprocessed by ``ReLUConvBN`` (1x1) or, after a reduction cell,
``FactorizedReduce``.

Convolutions never have a bias (their BN follows). ``affine`` sets whether the batch norms learn a
scale and shift: DARTS search networks use ``affine=False``, evaluation networks ``affine=True``.
ReLUs are never in place: a node feeds several edges. Weights keep PyTorch's default
initialization, as in both reference implementations.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn


class OpBuilder(Protocol):
    """Builds one op module: ``c_in`` → ``c_out`` channels, spatial ``stride`` (1 or 2)."""

    def __call__(self, *, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module: ...


#: Op name → module builder; filled by ``register_op``.
CELL_OPS: dict[str, OpBuilder] = {}


def register_op(name: str) -> Callable[[OpBuilder], OpBuilder]:
    """Decorator that registers ``fn`` as the builder of the op ``name``."""

    def deco(fn: OpBuilder) -> OpBuilder:
        if name in CELL_OPS:
            raise ValueError(f"cell op {name!r} is registered twice")
        CELL_OPS[name] = fn
        return fn

    return deco


def make_op(name: str, *, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
    """Builds the module of the cell op ``name`` (freshly initialized).

    Raises:
        KeyError: for an op that is not registered.
    """
    try:
        builder = CELL_OPS[name]
    except KeyError:
        raise KeyError(f"unknown cell op {name!r}; registered: {', '.join(sorted(CELL_OPS))}") from None
    return builder(c_in=c_in, c_out=c_out, stride=stride, affine=affine)


class ReLUConvBN(nn.Sequential):
    """ReLU → Conv (no bias) → BN: NAS-Bench-201's ``nor_conv`` and DARTS's 1x1 preprocessing."""

    def __init__(
        self, c_in: int, c_out: int, *, kernel: int, stride: int, padding: int, dilation: int = 1, affine: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU → depthwise k×k (dilated) → pointwise 1x1 → BN (DARTS ``dil_conv``, one half of ``sep_conv``)."""

    def __init__(
        self, c_in: int, c_out: int, *, kernel: int, stride: int, padding: int, dilation: int, affine: bool
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """DARTS ``sep_conv``: two undilated ``DilConv`` halves, c_in → c_in (with the stride) → c_out."""

    def __init__(self, c_in: int, c_out: int, *, kernel: int, stride: int, affine: bool) -> None:
        pad = kernel // 2
        super().__init__(
            DilConv(c_in, c_in, kernel=kernel, stride=stride, padding=pad, dilation=1, affine=affine),
            DilConv(c_in, c_out, kernel=kernel, stride=1, padding=pad, dilation=1, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halves H and W: ReLU, two 1x1 stride-2 convs on the input and on it shifted by one pixel, concat, BN.

    The two convs give ``c_out // 2`` and ``c_out - c_out // 2`` channels; the shifted input is
    zero-padded at the bottom and right, so odd sizes work too (out: ceil(H/2) × ceil(W/2)).
    """

    def __init__(self, c_in: int, c_out: int, *, affine: bool) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_b = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)  # N, C_in, H, W
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # N, C_in, H, W (one pixel down-right)
        out = torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1)  # N, C_out, ceil(H/2), ceil(W/2)
        return self.bn(out)


class Concat(nn.Module):
    """A cell's output: its output nodes concatenated along channels (one node: that node)."""

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:  # each N, C_i, H, W
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # N, Σ C_i, H, W


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape. Only mixtures (supernets) run it; derived networks
    treat a ``none`` edge as dead and build nothing."""

    def __init__(self, c_out: int, *, stride: int) -> None:
        super().__init__()
        self.c_out = c_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape  # N, C_in, H, W
        return x.new_zeros(n, self.c_out, -(-h // self.stride), -(-w // self.stride))  # N, C_out, H/s, W/s


def _same_channels(name: str, c_in: int, c_out: int) -> None:
    if c_in != c_out:
        raise ValueError(f"cell op {name!r} keeps the channel count, got {c_in} -> {c_out}")


def _stride(name: str, stride: int) -> None:
    if stride not in (1, 2):
        raise ValueError(f"cell op {name!r} supports stride 1 or 2, got {stride}")


@register_op("none")
def _none(*, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
    _stride("none", stride)
    return Zero(c_out, stride=stride)


@register_op("skip_connect")
def _skip(*, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
    _stride("skip_connect", stride)
    if stride == 1:
        _same_channels("skip_connect", c_in, c_out)
        return nn.Identity()
    return FactorizedReduce(c_in, c_out, affine=affine)


def _conv_op(kernel: int) -> OpBuilder:
    def build(*, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
        _stride(f"nor_conv_{kernel}x{kernel}", stride)
        return ReLUConvBN(c_in, c_out, kernel=kernel, stride=stride, padding=kernel // 2, affine=affine)

    return build


register_op("nor_conv_1x1")(_conv_op(1))
register_op("nor_conv_3x3")(_conv_op(3))


@register_op("avg_pool_3x3")
def _avg_pool(*, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
    _same_channels("avg_pool_3x3", c_in, c_out)
    _stride("avg_pool_3x3", stride)
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_op("max_pool_3x3")
def _max_pool(*, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
    _same_channels("max_pool_3x3", c_in, c_out)
    _stride("max_pool_3x3", stride)
    return nn.MaxPool2d(3, stride=stride, padding=1)


def _sep_op(kernel: int) -> OpBuilder:
    def build(*, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
        _stride(f"sep_conv_{kernel}x{kernel}", stride)
        return SepConv(c_in, c_out, kernel=kernel, stride=stride, affine=affine)

    return build


def _dil_op(kernel: int) -> OpBuilder:
    def build(*, c_in: int, c_out: int, stride: int, affine: bool) -> nn.Module:
        _stride(f"dil_conv_{kernel}x{kernel}", stride)
        # dilation 2: the k×k kernel spans 2k-1 pixels, padding k-1 keeps the size
        return DilConv(c_in, c_out, kernel=kernel, stride=stride, padding=kernel - 1, dilation=2, affine=affine)

    return build


register_op("sep_conv_3x3")(_sep_op(3))
register_op("sep_conv_5x5")(_sep_op(5))
register_op("dil_conv_3x3")(_dil_op(3))
register_op("dil_conv_5x5")(_dil_op(5))
