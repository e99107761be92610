"""What every search space shares: categorical decisions, architecture validation, sampling and
variation, and the slot layout that costs are computed from. Chain spaces (``SearchSpace``) and cell
spaces (``hwnas.space.cells.cell_space.CellSpace``) add how decisions become blocks.

An architecture (DESIGN.md, contract) is plain JSON::

    {"space": "proxyless", "resolution": 224, "choices": {"s1_l1": "e6_k5", ...}}

with optional ``width_mult`` (default 1.0, scales every width of the space, for CPU-sized runs) and
``num_classes`` (default: the space's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.safeio import short
from hwnas.space.blocks import Block, op_key
from hwnas.space.schema import Decision


@dataclass(frozen=True)
class Slot:
    """A position in the network (``stem.0``, ``s2.3``, ``head.1``) and the decisions that determine
    its block, or whether it runs at all (indices into ``SearchSpace.decisions``, ascending)."""

    name: str
    decisions: tuple[int, ...]


@dataclass(frozen=True)
class SlotTable:
    """The blocks a slot can hold, as dense arrays for vectorized costs (``hwnas.latency.batch``).

    Attributes:
        decisions: Decisions the slot's block (or its absence) depends on, ascending.
        blocks: The distinct blocks, with a table key or not.
        index: Shape ``(num_options[d] for d in decisions)``: index into ``blocks`` per combination
            of option indices, -1 where the slot holds nothing (a cut layer, a dead edge).
    """

    decisions: tuple[int, ...]
    blocks: tuple[Block, ...]
    index: np.ndarray


class DecisionSpace:
    """Base of every search space: an ordered list of categorical decisions over a parsed spec.

    Subclasses implement ``_resolve`` (arch → blocks and the decisions that mattered), ``slots`` and
    ``slot_blocks``.

    Args:
        spec: The parsed space file; needs ``name``, ``resolution``, ``num_classes``, ``presets``,
            ``path`` and ``decisions``.
    """

    #: ``chain`` or ``cell`` (the ``kind`` of the space file).
    kind = "chain"

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.name: str = spec.name
        self.decisions: tuple[Decision, ...] = spec.decisions
        self._index = {d.name: i for i, d in enumerate(self.decisions)}

    # ---- decisions -------------------------------------------------------------------------

    @property
    def num_options(self) -> tuple[int, ...]:
        """Number of options of each decision, in decision order."""
        return tuple(len(d.options) for d in self.decisions)

    @property
    def presets(self) -> tuple[str, ...]:
        return tuple(self.spec.presets)

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

    def all_blocks(self, *, resolution: int | None = None, width_mult: float = 1.0,
                   num_classes: int | None = None) -> list[Block]:
        """Every distinct block with a table key any architecture of the space can contain (``skip``
        and ``concat`` blocks, which cost nothing, excluded)."""
        seen: dict[Block, None] = {}
        for slot in self.slots():
            for b in self.slot_blocks(slot, resolution=resolution, width_mult=width_mult,
                                      num_classes=num_classes).values():
                if b is not None and op_key(b) is not None:
                    seen.setdefault(b, None)
        return list(seen)


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


    # ---- structure (subclasses) ------------------------------------------------------------

    def _resolve(self, arch: dict[str, Any]) -> tuple[list[Block], set[str]]:
        raise NotImplementedError

    def slots(self) -> list[Slot]:
        """Every position of the network, in order, with the decisions its block depends on."""
        raise NotImplementedError

    def slot_blocks(self, slot: Slot, *, resolution: int | None = None, width_mult: float = 1.0,
                    num_classes: int | None = None) -> dict[tuple[int, ...], Block | None]:
        """The block of ``slot`` for every combination of its decisions' option indices."""
        raise NotImplementedError

    def dead_slots(self, indices: np.ndarray) -> frozenset[int]:
        """Slots (indices into ``slots()``) whose block an architecture holds but never uses: cell
        edges that reach no output. Chain spaces have none."""
        return frozenset()

    def layout(self, *, resolution: int | None = None, width_mult: float = 1.0,
               num_classes: int | None = None) -> list[SlotTable]:
        """Every slot's blocks as dense index arrays (``SlotTable``), for vectorized costs."""
        out = []
        for slot in self.slots():
            table = self.slot_blocks(slot, resolution=resolution, width_mult=width_mult, num_classes=num_classes)
            blocks: dict[Block, int] = {}
            index = np.full(tuple(self.num_options[d] for d in slot.decisions), -1, dtype=np.int64)
            for combo, b in table.items():
                if b is not None:
                    index[combo] = blocks.setdefault(b, len(blocks))
            out.append(SlotTable(slot.decisions, tuple(blocks), index))
        return out

    def size_log10(self) -> float:
        """log10 of the number of encodings: the product of the options' counts (chain spaces count
        layers cut by a depth decision once)."""
        return sum(math.log10(n) for n in self.num_options)

    def describe(self) -> dict[str, Any]:
        """Summary for ``hwnas spaces``."""
        size = self.size_log10()
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.spec.description,
            "decisions": len(self.decisions),
            "size_log10": round(size, 3),
            "size": int(round(10 ** size)) if size < 15 else None,
            "presets": list(self.presets),
            "resolution": self.spec.resolution,
        }

    def _check_presets(self) -> None:
        """Validates every preset of the spec (``InputError`` naming the file and the preset)."""
        for pname, choices in self.spec.presets.items():
            self.validate_arch({"space": self.name, "choices": choices}, where=f"{self.spec.path}: presets.{pname}")
