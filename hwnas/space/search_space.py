"""Search spaces: load by name or path, validate architectures, resolve decisions into blocks,
and sample / mutate / cross over architectures (strategies only ever see decisions).

An architecture (DESIGN.md, contract) is plain JSON::

    {"space": "proxyless", "resolution": 224, "choices": {"s1_l1": "e6_k5", ...}}

with optional ``width_mult`` (default 1.0, scales every width of the space, for CPU-sized runs) and
``num_classes`` (default: the space's).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.safeio import short
from hwnas.space.blocks import Block, make_divisible
from hwnas.space.schema import Decision, FixedLayer, SpaceSpec, Stage, is_ref


@dataclass(frozen=True)
class Slot:
    """A position in the network (``stem.0``, ``s2.3``, ``head.1``) and the decisions that determine
    its block, or whether it runs at all (indices into ``SearchSpace.decisions``, ascending)."""

    name: str
    decisions: tuple[int, ...]


class SearchSpace:
    """A validated search space.

    Args:
        spec: The parsed space file (``hwnas.space.schema.parse_space``).
    """

    def __init__(self, spec: SpaceSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.decisions: tuple[Decision, ...] = spec.decisions
        self._index = {d.name: i for i, d in enumerate(self.decisions)}
        self._check_every_option_resolves()
        for pname, choices in spec.presets.items():
            self.validate_arch({"space": self.name, "choices": choices}, where=f"{spec.path}: presets.{pname}")

    # ---- decisions -------------------------------------------------------------------------

    @property
    def num_options(self) -> tuple[int, ...]:
        """Number of options of each decision, in decision order."""
        return tuple(len(d.options) for d in self.decisions)

    @property
    def presets(self) -> tuple[str, ...]:
        return tuple(self.spec.presets)

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

    # ---- architectures ---------------------------------------------------------------------

    def make_arch(self, choices: Mapping[str, Any], *, resolution: int | None = None,
                  width_mult: float = 1.0, num_classes: int | None = None) -> dict[str, Any]:
        """A complete, validated architecture dict from choices."""
        return self.validate_arch({
            "space": self.name,
            "resolution": resolution or self.spec.resolution,
            "width_mult": width_mult,
            "num_classes": num_classes or self.spec.num_classes,
            "choices": dict(choices),
        })

    def preset(self, name: str, *, resolution: int | None = None, width_mult: float = 1.0,
               num_classes: int | None = None) -> dict[str, Any]:
        """The architecture of a named preset (e.g. ``mobilenet_v2``)."""
        if name not in self.spec.presets:
            known = ", ".join(self.presets) or "none"
            raise InputError(f"preset {short(name)} is not in space {self.name} (presets: {known}).")
        return self.make_arch(self.spec.presets[name], resolution=resolution, width_mult=width_mult,
                              num_classes=num_classes)

    def validate_arch(self, arch: Any, *, where: str = "arch") -> dict[str, Any]:
        """Checks an architecture against this space and returns it normalized.

        The result always carries ``space``, ``resolution``, ``width_mult``, ``num_classes`` and
        ``choices`` (in decision order, each option as declared by the space).

        Raises:
            InputError: naming the offending field.
        """
        if not isinstance(arch, dict):
            raise InputError(f"{where}: must be a JSON object with 'space', 'resolution' and 'choices'.")
        unknown = set(arch) - {"space", "resolution", "width_mult", "num_classes", "choices"}
        if unknown:
            raise InputError(f"{where}: unknown field {short(sorted(unknown)[0])} (allowed: space, resolution, width_mult, num_classes, choices).")
        if arch.get("space") != self.name:
            raise InputError(f"{where}.space: is {short(arch.get('space'))}, but this is space {self.name!r}.")
        res = arch.get("resolution", self.spec.resolution)
        if isinstance(res, bool) or not isinstance(res, int) or res < 8:
            raise InputError(f"{where}.resolution: must be an integer >= 8, got {short(res)}.")
        wm = arch.get("width_mult", 1.0)
        if isinstance(wm, bool) or not isinstance(wm, (int, float)) or not (0.05 <= wm <= 4.0):
            raise InputError(f"{where}.width_mult: must be a number in [0.05, 4], got {short(wm)}.")
        nc = arch.get("num_classes", self.spec.num_classes)
        if isinstance(nc, bool) or not isinstance(nc, int) or nc < 1:
            raise InputError(f"{where}.num_classes: must be a positive integer, got {short(nc)}.")
        choices = arch.get("choices")
        if not isinstance(choices, dict):
            raise InputError(f"{where}.choices: must be an object of decision → option.")
        for k in choices:
            if k not in self._index:
                raise InputError(f"{where}.choices.{k}: is not a decision of space {self.name}.")
        norm: dict[str, Any] = {}
        for d in self.decisions:
            if d.name not in choices:
                raise InputError(f"{where}.choices.{d.name}: is missing (options: {list(d.options)}).")
            v = choices[d.name]
            opt = next((o for o in d.options if o == v and isinstance(o, str) == isinstance(v, str)), None)
            if opt is None or isinstance(v, bool):
                raise InputError(f"{where}.choices.{d.name}: {short(v)} is not an option (options: {list(d.options)}).")
            norm[d.name] = opt
        return {"space": self.name, "resolution": res, "width_mult": float(wm), "num_classes": nc, "choices": norm}

    # ---- resolution: decisions → blocks ----------------------------------------------------

    def resolve(self, arch: Mapping[str, Any]) -> list[Block]:
        """The concrete blocks of an architecture, stem to classifier (validated first)."""
        return self._resolve(self.validate_arch(dict(arch)))[0]

    def active_decisions(self, arch: Mapping[str, Any]) -> set[str]:
        """Decisions that change the network (layers cut by a depth decision do not)."""
        return self._resolve(self.validate_arch(dict(arch)))[1]

    def canonical(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The arch with every inactive decision set to its first option (one form per network)."""
        a = self.validate_arch(dict(arch))
        active = self._resolve(a)[1]
        a["choices"] = {d.name: (a["choices"][d.name] if d.name in active else d.options[0]) for d in self.decisions}
        return a

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

    def all_blocks(self, *, resolution: int | None = None, width_mult: float = 1.0,
                   num_classes: int | None = None) -> list[Block]:
        """Every distinct block any architecture of the space can contain (skip blocks excluded)."""
        seen: dict[Block, None] = {}
        for slot in self.slots():
            for b in self.slot_blocks(slot, resolution=resolution, width_mult=width_mult,
                                      num_classes=num_classes).values():
                if b is not None and b.op != "skip":
                    seen.setdefault(b, None)
        return list(seen)

    def _check_every_option_resolves(self) -> None:
        base = {d.name: d.options[0] for d in self.decisions}
        arch = {"space": self.name, "resolution": self.spec.resolution, "width_mult": 1.0,
                "num_classes": self.spec.num_classes}
        for d in self.decisions:
            for o in d.options:
                self._resolve({**arch, "choices": {**base, d.name: o}})

    # ---- sampling and variation (decisions only) -------------------------------------------

    def sample(self, rng: np.random.Generator, *, resolution: int | None = None, width_mult: float = 1.0,
               num_classes: int | None = None) -> dict[str, Any]:
        """A uniformly random architecture (each decision independently uniform)."""
        idx = [int(rng.integers(n)) for n in self.num_options]
        return self.decode(idx, resolution=resolution, width_mult=width_mult, num_classes=num_classes)

    def mutate(self, arch: Mapping[str, Any], rng: np.random.Generator, *, prob: float = 0.1,
               min_changes: int = 1) -> dict[str, Any]:
        """Re-draws each decision with probability ``prob`` (SPOS, Guo et al. 2020, Sec. 3.4).

        At least ``min_changes`` decisions (with more than one option) take a different option.
        """
        a = self.validate_arch(dict(arch))
        idx = self.encode(a)
        changed = []
        for i, n in enumerate(self.num_options):
            if n > 1 and rng.random() < prob:
                new = int(rng.integers(n - 1))
                idx[i] = new if new < idx[i] else new + 1
                changed.append(i)
        free = [i for i, n in enumerate(self.num_options) if n > 1 and i not in changed]
        while len(changed) < min_changes and free:
            i = free.pop(int(rng.integers(len(free))))
            new = int(rng.integers(self.num_options[i] - 1))
            idx[i] = new if new < idx[i] else new + 1
            changed.append(i)
        return self.decode(idx, resolution=a["resolution"], width_mult=a["width_mult"], num_classes=a["num_classes"])

    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Uniform crossover: each decision from either parent with probability 1/2 (SPOS Sec. 3.4)."""
        a, b = self.validate_arch(dict(a)), self.validate_arch(dict(b))
        ia, ib = self.encode(a), self.encode(b)
        take_b = rng.random(len(ia)) < 0.5
        idx = np.where(take_b, ib, ia)
        return self.decode(idx, resolution=a["resolution"], width_mult=a["width_mult"], num_classes=a["num_classes"])

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """Option indices of an architecture, shape (num_decisions,), int64."""
        ch = arch["choices"]
        return np.array([d.options.index(ch[d.name]) for d in self.decisions], dtype=np.int64)

    def decode(self, indices: Sequence[int] | np.ndarray, *, resolution: int | None = None,
               width_mult: float = 1.0, num_classes: int | None = None) -> dict[str, Any]:
        """The architecture with the given option indices."""
        if len(indices) != len(self.decisions):
            raise InputError(f"expected {len(self.decisions)} option indices for space {self.name}, got {len(indices)}.")
        choices = {}
        for d, i in zip(self.decisions, indices):
            if not 0 <= int(i) < len(d.options):
                raise InputError(f"option index {int(i)} is out of range for decision {d.name}.")
            choices[d.name] = d.options[int(i)]
        return self.make_arch(choices, resolution=resolution, width_mult=width_mult, num_classes=num_classes)

    def describe(self) -> dict[str, Any]:
        """Summary for ``hwnas spaces``."""
        return {
            "name": self.name,
            "description": self.spec.description,
            "decisions": len(self.decisions),
            "size_log10": round(self.size_log10(), 3),
            "presets": list(self.presets),
            "resolution": self.spec.resolution,
        }
