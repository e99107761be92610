"""Chain search spaces (MobileNet / ShuffleNet style): stages of layers whose fields reference
decisions; ``_resolve`` turns an architecture's decisions into its blocks. Validation, sampling and
variation are shared with cell spaces (``hwnas.space.decision_space``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.space.blocks import Block, make_divisible
from hwnas.space.decision_space import DecisionSpace, Slot, SlotTable
from hwnas.space.schema import FixedLayer, SpaceSpec, Stage, is_ref

__all__ = ["SearchSpace", "Slot", "SlotTable"]


class SearchSpace(DecisionSpace):
    """A validated chain search space.

    Args:
        spec: The parsed space file (``hwnas.space.schema.parse_space``).
    """

    kind = "chain"

    def __init__(self, spec: SpaceSpec) -> None:
        super().__init__(spec)
        self._check_every_option_resolves()
        self._check_presets()

    # ---- decisions -------------------------------------------------------------------------

    def size_log10(self) -> float:
        """log10 of the number of distinct networks (decisions of layers cut by a depth count once)."""
        owned_by_depth: set[str] = set()
        total = 0.0
        for s in self.spec.stages:
            if not is_ref(s.depth):
                continue
            depth_d = self.decisions[self._index[s.depth[1:]]]
            terms = []
            used_any: set[str] = set()
            for d in depth_d.options:
                used = self._stage_refs(s, d)
                used_any |= used
                terms.append(sum(math.log10(len(self.decisions[self._index[r]].options)) for r in used))
            owned_by_depth |= used_any | {depth_d.name}
            m = max(terms)
            total += m + math.log10(sum(10 ** (t - m) for t in terms))
        for d in self.decisions:
            if d.name not in owned_by_depth:
                total += math.log10(len(d.options))
        return total

    def _stage_refs(self, s: Stage, depth: int) -> set[str]:
        vals = list(s.defaults.values()) + [s.width]
        templates = s.layers if s.repeat else s.layers[:depth]
        for t in templates:
            vals += list(t.values())
        return {v[1:] for v in vals if is_ref(v)}


    def _resolve(self, arch: dict[str, Any]) -> tuple[list[Block], set[str]]:
        sp = self.spec
        choices: Mapping[str, Any] = arch["choices"]
        wm: float = arch["width_mult"]
        used: set[str] = set()

        def val(v: Any) -> Any:
            if is_ref(v):
                used.add(v[1:])
                return choices[v[1:]]
            return v

        def width(c: float) -> int:
            return make_divisible(c * wm, sp.channel_divisor)

        blocks: list[Block] = []
        hw, ch = arch["resolution"], sp.in_channels
        for i, f in enumerate(sp.stem):
            b = self._fixed_block(f, cin=ch, hw=hw, cout=width(f.out) if f.out else ch, slot=f"stem.{i}")
            blocks.append(b)
            hw, ch = b.out_hw, b.cout
        for s in sp.stages:
            depth = int(val(s.depth))
            cout = width(s.out * float(val(s.width)))
            for j in range(depth):
                template = s.layers[0] if s.repeat else s.layers[j]
                fields = {k: val(v) for k, v in {**s.defaults, **template}.items()}
                if fields.get("op") in sp.ops:
                    fields = {**fields, **sp.ops[fields["op"]]}
                stride = s.stride if j == 0 else 1
                b = self._layer_block(fields, cin=ch, cout=cout, hw=hw, stride=stride, slot=f"{s.name}.{j}")
                blocks.append(b)
                hw, ch = b.out_hw, b.cout
        for i, f in enumerate(sp.head):
            cout = arch["num_classes"] if f.op == "classifier" else (width(f.out) if f.out else ch)
            b = self._fixed_block(f, cin=ch, hw=hw, cout=cout, slot=f"head.{i}")
            blocks.append(b)
            hw, ch = b.out_hw, b.cout
        return blocks, used

    def _fixed_block(self, f: FixedLayer, *, cin: int, hw: int, cout: int, slot: str) -> Block:
        return Block(op=f.op, cin=cin, cout=cout, hw=hw, stride=f.stride, kernel=f.kernel, act=f.act,
                     bn=f.bn, bias=f.bias, pool=f.pool, dropout=f.dropout, bn_eps=self.spec.bn_eps,
                     name=f.key, slot=slot)

    def _layer_block(self, fields: Mapping[str, Any], *, cin: int, cout: int, hw: int, stride: int,
                     slot: str) -> Block:
        sp = self.spec
        op = fields.get("op", "mbconv")
        kernel = int(fields.get("kernel", 3))
        act = fields.get("act", "relu")
        same_shape = stride == 1 and cin == cout
        if op == "skip":
            if not same_shape:
                raise InputError(f"{sp.path}: layer {slot}: 'skip' needs stride 1 and equal in/out widths "
                                 f"(got stride {stride}, {cin}→{cout}); do not offer it on a stage's first layer.")
            return Block(op="skip", cin=cin, cout=cout, hw=hw, slot=slot)
        residual = fields.get("skip", "identity") == "identity" and same_shape
        common = dict(cin=cin, cout=cout, hw=hw, stride=stride, kernel=kernel, act=act, bn_eps=sp.bn_eps, slot=slot)
        if op in ("shuffle", "xception"):
            if cin % 2 or cout % 2:
                raise InputError(f"{sp.path}: layer {slot}: ShuffleNet units need even widths, got {cin}→{cout}.")
            if stride == 1 and cin != cout:
                raise InputError(f"{sp.path}: layer {slot}: a stride-1 ShuffleNet unit needs equal in/out widths.")
            proj = (cin if sp.shuffle_proj == "input" else cout // 2) if stride == 2 else cin // 2
            return Block(op=op, mid=cout // 2, proj=proj, **common)
        se_ratio = float(fields.get("se", 0.0))
        gate = "hsigmoid" if sp.se_style == "ofa" else "sigmoid"
        if op == "mbconv":
            expand = float(fields.get("expand", 6))
            mid = cin if expand == 1 else make_divisible(round(cin * expand), sp.mid_divisor)
            return Block(op="mbconv", mid=mid, se=self._se_channels(se_ratio, mid, cin), se_gate=gate,
                         residual=residual, **common)
        se_on = cin if op == "sepconv" else cout
        return Block(op=op, se=self._se_channels(se_ratio, se_on, cin), se_gate=gate, residual=residual, **common)

    def _se_channels(self, ratio: float, channels: int, cin: int) -> int:
        if ratio <= 0:
            return 0
        if self.spec.se_style == "ofa":  # OFA SEModule: make_divisible(channels // 4, 8) for ratio 1/4
            return make_divisible(channels * ratio, 8)
        return max(1, int(cin * ratio))  # MnasNet / EfficientNet: relative to the block's input

    # ---- slots: which decisions determine which block ------------------------------------

    def slots(self) -> list[Slot]:
        """Every position of the network, in order, with the decisions its block depends on.

        A layer depends on the decisions its fields reference, its stage's width and (when a depth
        decision could cut it) depth, and on whatever set its input width (the previous stage's
        width decision). Fixed layers depend on the width decisions that reach them.
        """
        sp = self.spec
        idx = self._index

        def refs(values) -> set[int]:
            return {idx[v[1:]] for v in values if is_ref(v)}

        out: list[Slot] = []
        chan: set[int] = set()  # decisions that determine the current channel count
        for i, f in enumerate(sp.stem):
            out.append(Slot(f"stem.{i}", tuple(sorted(chan))))
            if f.out:
                chan = set()
        for s in sp.stages:
            own_width = refs([s.width])
            depths = self.decisions[idx[s.depth[1:]]].options if is_ref(s.depth) else [s.depth]
            max_depth = max(depths)
            for j in range(max_depth):
                template = s.layers[0] if s.repeat else s.layers[j]
                deps = refs(list(s.defaults.values()) + list(template.values())) | own_width
                deps |= chan if j == 0 else set()
                if is_ref(s.depth) and j + 1 > min(depths):
                    deps.add(idx[s.depth[1:]])
                out.append(Slot(f"{s.name}.{j}", tuple(sorted(deps))))
            chan = own_width
        for i, f in enumerate(sp.head):
            out.append(Slot(f"head.{i}", tuple(sorted(chan))))
            if f.out:
                chan = set()
        return out

    def slot_blocks(self, slot: Slot, *, resolution: int | None = None, width_mult: float = 1.0,
                    num_classes: int | None = None) -> dict[tuple[int, ...], Block | None]:
        """The block of ``slot`` for every combination of its decisions' option indices.

        Returns:
            ``{(i_1, ..., i_k): block or None}`` over the product of the options of
            ``slot.decisions`` (``None`` where a depth decision cuts the layer).
        """
        base = self.decode([0] * len(self.decisions), resolution=resolution, width_mult=width_mult,
                           num_classes=num_classes)
        table: dict[tuple[int, ...], Block | None] = {}
        for combo in itertools.product(*(range(self.num_options[d]) for d in slot.decisions)):
            choices = dict(base["choices"])
            for d, o in zip(slot.decisions, combo):
                choices[self.decisions[d].name] = self.decisions[d].options[o]
            blocks, _ = self._resolve({**base, "choices": choices})
            table[combo] = next((b for b in blocks if b.slot == slot.name), None)
        return table

    def _check_every_option_resolves(self) -> None:
        base = {d.name: d.options[0] for d in self.decisions}
        arch = {"space": self.name, "resolution": self.spec.resolution, "width_mult": 1.0,
                "num_classes": self.spec.num_classes}
        for d in self.decisions:
            for o in d.options:
                self._resolve({**arch, "choices": {**base, d.name: o}})
