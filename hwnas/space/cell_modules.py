"""Module builders of the cell-space block ops (``hwnas.space.blocks.CELL_EDGE_OPS`` and
``CELL_SKELETON_OPS``), registered with ``hwnas.space.ops.make_module``.

The modules themselves are in ``hwnas.space.cells`` (checked there against the NAS-Bench-201 and
DARTS reference implementations); this file only maps a ``Block`` onto them.
"""

from __future__ import annotations

from torch import nn

from hwnas.space.blocks import CELL_EDGE_OPS, Block
from hwnas.space.cells.nb201_net import ResNetBasicBlock
from hwnas.space.cells.ops import Concat, FactorizedReduce, ReLUConvBN, make_op
from hwnas.space.ops import register


def _edge_builder(op: str):
    def build(b: Block) -> nn.Module:
        return make_op(op, c_in=b.cin, c_out=b.cout, stride=b.stride, affine=b.affine)

    return build


for _op in CELL_EDGE_OPS:
    register(_op)(_edge_builder(_op))


@register("resblock")
def _resblock(b: Block) -> nn.Module:
    """NAS-Bench-201's stride-2 residual block between stages (Dong & Yang 2020, Sec. 2.1)."""
    if b.stride != 2:
        raise ValueError(f"resblock {b.slot}: NAS-Bench-201's reduction block has stride 2, got {b.stride}")
    return ResNetBasicBlock(b.cin, b.cout)


@register("bn_relu")
def _bn_relu(b: Block) -> nn.Module:
    """BN → ReLU before global pooling (NAS-Bench-201's ``lastact``)."""
    return nn.Sequential(nn.BatchNorm2d(b.cin, eps=b.bn_eps, affine=b.affine), nn.ReLU(inplace=True))


@register("relu_conv_bn")
def _relu_conv_bn(b: Block) -> nn.Module:
    """DARTS cell-input preprocessing: ReLU → k×k conv → BN (Liu et al. 2019, Appendix A.1)."""
    return ReLUConvBN(b.cin, b.cout, kernel=b.kernel, stride=b.stride, padding=b.kernel // 2, affine=b.affine)


@register("factorized_reduce")
def _factorized_reduce(b: Block) -> nn.Module:
    """DARTS preprocessing of a cell input at twice the resolution (after a reduction cell)."""
    return FactorizedReduce(b.cin, b.cout, affine=b.affine)


register("concat")(lambda b: Concat())

#: The block ops this module gives builders to.
CELL_BLOCK_OPS = (*CELL_EDGE_OPS, "resblock", "bn_relu", "relu_conv_bn", "factorized_reduce", "concat")
