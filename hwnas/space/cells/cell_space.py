"""Cell search spaces: NAS-Bench-201 (Dong & Yang, ICLR 2020) and the DARTS CNN space (Liu et al.,
ICLR 2019) as decisions → blocks, with the same interface as chain spaces.

A cell network is a sequence of blocks over registers (``hwnas.space.wiring``): every live edge is a
block that reads its source node and adds into its destination node, so one builder, one LUT key
and one cost function serve cells as they serve chains. Dead edges (``none``, or no path from the
cell input to its output: ``nb201.live_edges``) are not blocks: they are absent from the module, the
export, the FLOPs, the params and the latency. A NAS-Bench-201 cell with no live edge outputs zeros;
its network's latency is the skeleton's alone (stem, reduction blocks, head).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Callable, Mapping

import numpy as np

from hwnas.errors import InputError
from hwnas.space.blocks import Block
from hwnas.space.cells.cell_spec import CELL_TYPES, CellSpec
from hwnas.space.cells.darts_genotype import NUM_INPUTS
from hwnas.space.cells.nb201 import EDGES, NB201_OPS, format_nb201, live_edges, parse_nb201
from hwnas.space.decision_space import DecisionSpace, Slot, SlotTable

#: A slot and the function that gives its block from the option indices of its decisions.
_Entry = tuple[Slot, Callable[[tuple[int, ...]], Block | None]]


class CellSpace(DecisionSpace):
    """A validated cell search space (``hwnas.space.cells.cell_spec.CellSpec``)."""

    kind = "cell"

    def __init__(self, spec: CellSpec) -> None:
        super().__init__(spec)
        self.spec: CellSpec = spec
        self._check_presets()
        self._entries_cache: dict[tuple[int, float, int], list[_Entry]] = {}

    # ---- the native string form --------------------------------------------------------------

    def to_string(self, arch: Mapping[str, Any]) -> str | None:
        """The NAS-Bench-201 string of an architecture (None for other topologies)."""
        if self.spec.topology != "nb201":
            return None
        a = self.validate_arch(dict(arch))
        return format_nb201([a["choices"][d.name] for d in self.decisions])

    def from_string(self, text: str, *, resolution: int | None = None, width_mult: float = 1.0,
                    num_classes: int | None = None) -> dict[str, Any]:
        """The architecture of a NAS-Bench-201 string (``|nor_conv_3x3~0|+|…|``).

        Raises:
            InputError: for a malformed string, an op this space does not offer, or another topology.
        """
        if self.spec.topology != "nb201":
            raise InputError(f"space {self.name} has no string form (only NAS-Bench-201 spaces do).")
        ops = parse_nb201(text)
        return self.make_arch({d.name: op for d, op in zip(self.decisions, ops)}, resolution=resolution,
                              width_mult=width_mult, num_classes=num_classes)

    # ---- decisions → blocks ------------------------------------------------------------------

    def _resolve(self, arch: dict[str, Any]) -> tuple[list[Block], set[str]]:
        idx = self.encode(arch)
        entries = self._entries(arch["resolution"], arch["width_mult"], arch["num_classes"])
        dead = self.dead_slots(idx)
        blocks, used = [], set()
        for si, (slot, make) in enumerate(entries):
            b = make(tuple(int(idx[d]) for d in slot.decisions))
            if b is not None and si not in dead:
                blocks.append(b)
                used |= {self.decisions[d].name for d in slot.decisions}
        return blocks, used

    def slots(self) -> list[Slot]:
        """Skeleton blocks, every cell's edges (decisions: the edge's op, and for DARTS its node's
        inputs) and each cell's output, in network order."""
        return [s for s, _ in self._entries(self.spec.resolution, 1.0, self.spec.num_classes)]

    def slot_blocks(self, slot: Slot, *, resolution: int | None = None, width_mult: float = 1.0,
                    num_classes: int | None = None) -> dict[tuple[int, ...], Block | None]:
        """The block of ``slot`` for every combination of its decisions' option indices (None: ``none``)."""
        entries = self._entries(resolution or self.spec.resolution, width_mult, num_classes or self.spec.num_classes)
        make = next(m for s, m in entries if s.name == slot.name)
        return {combo: make(combo) for combo in itertools.product(*(range(self.num_options[d]) for d in slot.decisions))}

    def dead_slots(self, indices: np.ndarray) -> frozenset[int]:
        """NAS-Bench-201 edges whose op is not ``none`` but that carry nothing to the cell output."""
        if self.spec.topology != "nb201":
            return frozenset()
        live = self._live[tuple(int(i) for i in indices)]
        return frozenset(si for k, slots in self._edge_slots.items()
                         if not live[k] and self.spec.ops[int(indices[k])] != "none" for si in slots)

    @functools.cached_property
    def _live(self) -> np.ndarray:
        """NAS-Bench-201: liveness of every edge for every cell, bool, shape (len(ops),) * 6 + (6,)."""
        ops = self.spec.ops
        out = np.zeros((len(ops),) * len(EDGES) + (len(EDGES),), dtype=bool)
        for combo in itertools.product(range(len(ops)), repeat=len(EDGES)):
            out[combo] = live_edges([ops[i] for i in combo])
        return out

    @functools.cached_property
    def _edge_slots(self) -> dict[int, tuple[int, ...]]:
        """NAS-Bench-201: edge index (into ``EDGES``) → the slots (one per cell) that hold it."""
        slots = self.slots()
        return {k: tuple(si for si, s in enumerate(slots) if s.decisions == (k,)) for k in range(len(EDGES))}

    def layout(self, *, resolution: int | None = None, width_mult: float = 1.0,
               num_classes: int | None = None) -> list[SlotTable]:
        """As for chains, except that a NAS-Bench-201 edge's table spans all 6 decisions of its cell
        (-1 where the edge is dead), so vectorized costs leave dead edges out exactly."""
        base = super().layout(resolution=resolution, width_mult=width_mult, num_classes=num_classes)
        if self.spec.topology != "nb201":
            return base
        live = self._live  # (n,)*6 + (6,)
        grid = np.indices((len(self.spec.ops),) * len(EDGES))  # 6, n, ..., n
        out = []
        for t in base:
            if len(t.decisions) != 1:
                out.append(t)
                continue
            k = t.decisions[0]
            index = np.where(live[..., k], t.index[grid[k]], -1)
            out.append(SlotTable(tuple(range(len(EDGES))), t.blocks, index))
        return out

    # ---- the network plan --------------------------------------------------------------------

    def _width(self, wm: float) -> int:
        return max(2, int(round(self.spec.channels * wm)))

    def _entries(self, resolution: int, width_mult: float, num_classes: int) -> list[_Entry]:
        key = (resolution, width_mult, num_classes)
        hit = self._entries_cache.get(key)
        if hit is None:
            build = self._nb201_entries if self.spec.topology == "nb201" else self._darts_entries
            hit = build(resolution, width_mult, num_classes)
            self._entries_cache[key] = hit
        return hit

    def _fixed(self, slot: str, block: Block) -> _Entry:
        return Slot(slot, ()), lambda combo, b=block: b

    def _edge(self, op: str, *, c: int, hw: int, stride: int, src: str, dst: str, slot: str) -> Block | None:
        if op == "none":
            return None
        kind = "skip" if op == "skip_connect" and stride == 1 else op
        return Block(op=kind, cin=c, cout=c, hw=hw, stride=stride, affine=self.spec.affine,
                     src=(src,) if src else (), dst=dst, slot=slot)

    def _nb201_entries(self, resolution: int, width_mult: float, num_classes: int) -> list[_Entry]:
        sp = self.spec
        if resolution % 2 ** (sp.stages_count - 1):
            raise InputError(f"resolution: {resolution} px does not halve evenly through the "
                             f"{sp.stages_count - 1} reduction blocks of space {self.name}.")
        c0 = self._width(width_mult)
        entries = [self._fixed("stem.0", Block(op="conv", cin=sp.in_channels, cout=c0, hw=resolution, kernel=3,
                                               act="none", name="Conv", slot="stem.0"))]
        hw, c_prev, k = resolution, c0, 0
        for s in range(sp.stages_count):
            c = c0 * 2 ** s
            if s > 0:
                slot = f"reduce.{s}"
                entries.append(self._fixed(slot, Block(op="resblock", cin=c_prev, cout=c, hw=hw, stride=2,
                                                       name="ResBlock", slot=slot)))
                hw = (hw - 1) // 2 + 1
            for _ in range(sp.cells_per_stage):
                for e, (i, j) in enumerate(EDGES):
                    slot = f"c{k}.{i}<-{j}"

                    def make(combo, i=i, j=j, c=c, hw=hw, k=k, slot=slot):
                        return self._edge(sp.ops[combo[0]], c=c, hw=hw, stride=1, src="" if j == 0 else f"c{k}.n{j}",
                                          dst=f"c{k}.n{i}", slot=slot)

                    entries.append((Slot(slot, (e,)), make))
                out = f"c{k}.out"
                entries.append(self._fixed(out, Block(op="concat", cin=c, cout=c, hw=hw, src=(f"c{k}.n3",),
                                                      slot=out)))
                k += 1
            c_prev = c
        entries.append(self._fixed("head.0", Block(op="bn_relu", cin=c_prev, cout=c_prev, hw=hw, name="LastAct",
                                                   slot="head.0")))
        entries.append(self._fixed("head.1", Block(op="classifier", cin=c_prev, cout=num_classes, hw=hw,
                                                   pool=True, bias=True, name="Logits", slot="head.1")))
        return entries

    def _darts_entries(self, resolution: int, width_mult: float, num_classes: int) -> list[_Entry]:
        sp = self.spec
        c = self._width(width_mult)
        c_stem = sp.stem_multiplier * c
        entries = [self._fixed("stem.0", Block(op="conv", cin=sp.in_channels, cout=c_stem, hw=resolution, kernel=3,
                                               act="none", name="Conv", dst="cell-1", slot="stem.0"))]
        reductions = {sp.layers // 3, 2 * sp.layers // 3}
        c_pp, c_p, hw_pp, hw_p, red_prev = c_stem, c_stem, resolution, resolution, False
        index = {d.name: i for i, d in enumerate(self.decisions)}
        for k in range(sp.layers):
            red = k in reductions
            c = c * 2 if red else c
            ct = CELL_TYPES[int(red)]
            s0, s1 = f"cell{max(k - 2, -1)}", f"cell{max(k - 1, -1)}"
            if red_prev:
                pre0 = Block(op="factorized_reduce", cin=c_pp, cout=c, hw=hw_pp, stride=2, affine=sp.affine,
                             name="FactorizedReduce", src=(s0,), dst=f"c{k}.n0", slot=f"c{k}.pre0")
            else:
                pre0 = Block(op="relu_conv_bn", cin=c_pp, cout=c, hw=hw_pp, affine=sp.affine, name="Preprocess",
                             src=(s0,), dst=f"c{k}.n0", slot=f"c{k}.pre0")
            entries.append(self._fixed(f"c{k}.pre0", pre0))
            entries.append(self._fixed(f"c{k}.pre1", Block(op="relu_conv_bn", cin=c_p, cout=c, hw=hw_p,
                                                           affine=sp.affine, name="Preprocess", src=(s1,),
                                                           dst=f"c{k}.n1", slot=f"c{k}.pre1")))
            hw_out = (hw_p - 1) // 2 + 1 if red else hw_p
            nodes = range(NUM_INPUTS, NUM_INPUTS + 4)
            for j in nodes:
                inputs = index[f"{ct}.{j}.inputs"]
                for pos, side in enumerate(("op_a", "op_b")):
                    slot = f"c{k}.{j}.{side}"

                    def make(combo, j=j, k=k, pos=pos, red=red, c=c, hw_p=hw_p, hw_out=hw_out, slot=slot,
                             inputs=inputs):
                        src = int(self.decisions[inputs].options[combo[0]].split(",")[pos])
                        stride = 2 if red and src < NUM_INPUTS else 1
                        return self._edge(sp.ops[combo[1]], c=c, hw=hw_p if src < NUM_INPUTS else hw_out,
                                          stride=stride, src=f"c{k}.n{src}", dst=f"c{k}.n{j}", slot=slot)

                    entries.append((Slot(slot, (inputs, index[f"{ct}.{j}.{side}"])), make))
            out = f"c{k}.out"
            entries.append(self._fixed(out, Block(op="concat", cin=4 * c, cout=4 * c, hw=hw_out,
                                                  src=tuple(f"c{k}.n{j}" for j in nodes), dst=f"cell{k}", slot=out)))
            c_pp, c_p, hw_pp, hw_p, red_prev = c_p, 4 * c, hw_p, hw_out, red
        entries.append(self._fixed("head.0", Block(op="classifier", cin=c_p, cout=num_classes, hw=hw_p, pool=True,
                                                   bias=True, name="Logits", src=(f"cell{sp.layers - 1}",),
                                                   slot="head.0")))
        return entries


__all__ = ["CellSpace", "NB201_OPS"]
