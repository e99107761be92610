"""Block specs (the phenotype of an architecture) and their latency-table keys.

A ``Block`` is a concrete, hashable description of one layer of a network at its input shape:
everything that changes its latency, FLOPs and parameters, and nothing else. ``SearchSpace.resolve``
produces blocks, ``hwnas.space.build.build_model`` turns them into modules, ``op_key`` names them in a
latency lookup table and ``hwnas.space.cost.CostCounter`` counts their cost.

Key convention (Once-for-All / ProxylessNAS, so their published tables import; see DESIGN.md):

* ``Conv-input:224x224x3-output:112x112x32`` (stem) and the other fixed parts, named by the space
  file (``Conv_1``, ``Conv_2``, ``AvgPool2D``, ``MaxPool``, ``Logits``);
* ``expanded_conv-input:56x56x24-output:28x28x40-expand:144-kernel:5-stride:2-idskip:0-se:0-hs:0``
  for inverted-residual blocks, ``expand`` being the mid (depthwise) channel count;
* the same readable style for the other searchable ops: ``conv-…``, ``sepconv-…`` (MnasNet) and
  ``shuffle-…``, ``xception-…`` (ShuffleNetV2 units, with ``mid`` and ``proj`` channel counts).

``hs`` marks h-swish; ReLU and ReLU6 share ``hs:0`` as in the published tables.

Cell spaces (NAS-Bench-201, DARTS) key each live edge by its op, shape and stride, e.g.
``nor_conv_3x3-input:32x32x16-output:32x32x16-stride:1`` (``-affine:0`` where the batch norms learn
no scale and shift, as in DARTS search networks); their skeleton parts carry names from the space
(``ResBlock``, ``LastAct``, ``Preprocess``). A cell is wired by the blocks' ``src`` and ``dst``
registers (``hwnas.space.wiring``), which are not part of a block's identity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Ops a space may use in its stages, stem or head.
STAGE_OPS = ("mbconv", "conv", "sepconv", "shuffle", "xception", "skip")
FIXED_OPS = ("conv", "maxpool", "avgpool", "classifier")
#: Ops of cell-space edges (NAS-Bench-201, Dong & Yang 2020, Sec. 2.1; DARTS, Liu et al. 2019, Sec. 3.1.1).
#: ``none`` never becomes a block (a dead edge); ``skip_connect`` at stride 1 is the block op ``skip``.
CELL_EDGE_OPS = ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "max_pool_3x3", "skip_connect",
                 "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
#: Skeleton and wiring ops of cell spaces: NAS-Bench-201's residual reduction block, BN + ReLU before
#: pooling, DARTS's 1x1 ReLU-conv-BN and factorized-reduce preprocessing, and ``concat`` (a cell's
#: output: the concatenation of its output nodes, free).
CELL_SKELETON_OPS = ("resblock", "bn_relu", "relu_conv_bn", "factorized_reduce", "concat")
ACTIVATIONS = ("relu", "relu6", "hswish", "none")
SE_GATES = ("hsigmoid", "sigmoid")

#: Key prefix of searchable ops (fixed parts carry their own name from the space file).
_OP_KEY_PREFIX = {
    "mbconv": "expanded_conv",
    "conv": "conv",
    "sepconv": "sepconv",
    "shuffle": "shuffle",
    "xception": "xception",
}


@dataclass(frozen=True)
class Block:
    """One concrete layer of a network.

    Attributes:
        op: ``mbconv``, ``conv``, ``sepconv``, ``shuffle``, ``xception``, ``skip``, ``maxpool``,
            ``avgpool`` or ``classifier``.
        cin: Input channels.
        cout: Output channels (classes for ``classifier``).
        hw: Input height = width, pixels.
        stride: Spatial stride.
        kernel: Kernel size of the (depthwise) convolution.
        mid: ``mbconv``: expanded (depthwise) channels, equal to ``cin`` when there is no expand
            convolution; ``shuffle``/``xception``: channels inside the main branch.
        proj: ``shuffle``/``xception`` with stride 2: output channels of the projection branch.
        se: Squeeze-excite reduced channels, 0 for none.
        se_gate: Gate of the squeeze-excite module (``hsigmoid`` or ``sigmoid``).
        act: Activation (``relu``, ``relu6``, ``hswish``, ``none``).
        residual: Identity shortcut around the block.
        bn: Batch normalization after the convolution (``conv`` only; other ops always have it).
        bias: Convolution/linear bias.
        pool: ``classifier``: global average pooling before the linear layer.
        dropout: ``classifier``: dropout rate before the linear layer.
        bn_eps: Batch-norm epsilon.
        affine: Cell ops: whether the batch norms learn a scale and shift (DARTS search: no).
        name: Key prefix for fixed parts (``Conv``, ``Conv_1``, ``Logits``, ...); empty for
            searchable layers, whose prefix comes from ``op``.
        slot: Where the block sits (``stem.0``, ``s1.2``, ``head.1``); not part of its identity.
        src: Registers the block reads (``hwnas.space.wiring``); empty: the running tensor.
            Not part of its identity.
        dst: Register the block adds its output into; empty: it replaces the running tensor.
            Not part of its identity.
    """

    op: str
    cin: int
    cout: int
    hw: int
    stride: int = 1
    kernel: int = 1
    mid: int = 0
    proj: int = 0
    se: int = 0
    se_gate: str = "hsigmoid"
    act: str = "relu"
    residual: bool = False
    bn: bool = True
    bias: bool = False
    pool: bool = False
    dropout: float = 0.0
    bn_eps: float = 1e-5
    affine: bool = True
    name: str = ""
    slot: str = field(default="", compare=False)
    src: tuple[str, ...] = field(default=(), compare=False)
    dst: str = field(default="", compare=False)

    @property
    def out_hw(self) -> int:
        """Output height = width: same-padded windows, ``ceil(hw / stride)``; 1 after pooling."""
        if self.op == "avgpool" or (self.op == "classifier"):
            return 1
        return (self.hw - 1) // self.stride + 1

    def to_json(self) -> dict[str, Any]:
        """The block as a plain dict (``slot`` included)."""
        return asdict(self)


def _shape(hw: int, channels: int) -> str:
    return f"{hw}x{hw}x{channels}"


def op_key(block: Block) -> str | None:
    """The latency-table key of a block; ``None`` for ``skip`` and ``concat``, which cost nothing.

    Args:
        block: A resolved block.

    Returns:
        The key, e.g. ``expanded_conv-input:56x56x24-output:28x28x40-expand:144-kernel:5-stride:2-idskip:0-se:0-hs:0``.
    """
    b = block
    if b.op in ("skip", "concat"):
        return None
    io = f"input:{_shape(b.hw, b.cin)}-output:"
    if b.op == "classifier":
        return f"{b.name or 'Logits'}-{io}{b.cout}"
    io += _shape(b.out_hw, b.cout)
    if b.name:  # a fixed part of the network, named by the space file
        return f"{b.name}-{io}" + ("" if b.affine else "-affine:0")
    if b.op in CELL_EDGE_OPS:
        return f"{b.op}-{io}-stride:{b.stride}" + ("" if b.affine else "-affine:0")
    prefix = _OP_KEY_PREFIX[b.op]
    flags = f"idskip:{int(b.residual)}-se:{int(b.se > 0)}-hs:{int(b.act == 'hswish')}"
    if b.op == "mbconv":
        return f"{prefix}-{io}-expand:{b.mid}-kernel:{b.kernel}-stride:{b.stride}-{flags}"
    if b.op in ("conv", "sepconv"):
        return f"{prefix}-{io}-kernel:{b.kernel}-stride:{b.stride}-{flags}"
    # shuffle / xception
    return f"{prefix}-{io}-mid:{b.mid}-proj:{b.proj}-kernel:{b.kernel}-stride:{b.stride}"


def make_divisible(value: float, divisor: int) -> int:
    """Rounds a channel count to a multiple of ``divisor``, never more than 10% below ``value``.

    The rounding of MobileNetV2/V3, MnasNet and Once-for-All (``_make_divisible``).
    """
    if divisor <= 1:
        return max(1, int(round(value)))
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


_SEARCHABLE_PREFIX = {**{v: k for k, v in _OP_KEY_PREFIX.items()}, **{op: op for op in CELL_EDGE_OPS}}


def parse_key(key: str) -> dict[str, Any]:
    """Parses a latency-table key back into block fields (the inverse of ``op_key``).

    Returns:
        ``{"name", "op", "cin", "cout", "hw", "out_hw", ...}`` plus the key's own fields
        (``expand`` = mid channels, ``kernel``, ``stride``, ``idskip``, ``se``, ``hs``, ``mid``,
        ``proj``) as ints. ``op`` is the block op for searchable layers and ``None`` for fixed parts
        (whose ``name`` is then e.g. ``Conv_1``).

    Raises:
        ValueError: for a string that is not a key in this convention.
    """
    parts = key.split("-")
    name = parts[0]
    fields: dict[str, str] = {}
    for part in parts[1:]:
        k, sep, v = part.partition(":")
        if not sep:
            raise ValueError(f"malformed latency key {key!r}: segment {part!r} has no ':'")
        fields[k] = v
    if "input" not in fields or "output" not in fields:
        raise ValueError(f"malformed latency key {key!r}: needs input and output shapes")
    try:
        h, w, cin = (int(v) for v in fields.pop("input").split("x"))
        out = [int(v) for v in fields.pop("output").split("x")]
        parsed: dict[str, Any] = {k: int(v) for k, v in fields.items()}
    except ValueError:
        raise ValueError(f"malformed latency key {key!r}: shapes and fields must be integers") from None
    if len(out) == 1:  # Logits-...-output:1000
        out_hw, cout = 1, out[0]
    elif len(out) == 3:
        out_hw, cout = out[0], out[2]
    else:
        raise ValueError(f"malformed latency key {key!r}: output must be HxWxC or a class count")
    return {"name": name, "op": _SEARCHABLE_PREFIX.get(name), "cin": cin, "cout": cout, "hw": h,
            "out_hw": out_hw, **parsed}
