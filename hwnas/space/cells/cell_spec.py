"""The ``cell`` kind of the search-space format (``hwnas.space/1``, ``"kind": "cell"``).

A cell space file declares a macro skeleton (stem, stages of stacked cells, reduction blocks or
cells, head) and one cell DAG (input nodes, intermediate nodes, the candidate ops of every edge and
how nodes combine). Its decisions are generated from the cell, never listed:

* ``topology: "nb201"`` (NAS-Bench-201, Dong & Yang 2020, Sec. 2.1): 4 nodes, one edge per pair
  j < i; a node sums its incoming edges and the cell outputs node 3; decisions ``"1<-0"``,
  ``"2<-0"``, ``"2<-1"``, ``"3<-0"``, ``"3<-1"``, ``"3<-2"`` (the op of each edge); stages are
  joined by residual reduction blocks.
* ``topology: "darts"`` (Liu et al. 2019, Sec. 2.1 and 2.4): 2 input nodes (the two previous cells'
  outputs), 4 intermediate nodes with 2 inputs each, output = concatenation of the intermediate
  nodes; a normal and a reduction cell; decisions, per cell type and node j, ``normal.j.inputs``
  (the node's two distinct predecessors, ``"a,b"``, a < b) and ``normal.j.op_a`` / ``op_b`` (the op
  on the edge from a and from b): the standard genotype encoding with its pairs sorted by input.

See ``search_spaces/README.md`` for every field.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.safeio import short
from hwnas.space.cells.darts_genotype import DARTS_OPS, INPUTS_PER_NODE, NUM_INPUTS, DartsGenotype
from hwnas.space.cells.nb201 import EDGES, NB201_OPS, NUM_NODES, parse_nb201
from hwnas.space.schema import Decision

TOPOLOGIES = ("nb201", "darts")
CELL_SPACE_KEYS = ("format", "kind", "name", "description", "source", "resolution", "num_classes",
                   "in_channels", "cell", "skeleton", "presets")
CELL_KEYS = ("topology", "nodes", "intermediate_nodes", "inputs_per_node", "ops", "combine")
SKELETON_KEYS = ("channels", "stages", "cells_per_stage", "layers", "stem_multiplier", "reduction", "affine")
#: What each topology implements: its fixed cell shape, combine rule, reduction and allowed ops.
_FIXED = {
    "nb201": {"nodes": NUM_NODES, "combine": "sum", "reduction": "resblock", "ops": NB201_OPS},
    "darts": {"intermediate_nodes": 4, "inputs_per_node": INPUTS_PER_NODE, "combine": "concat",
              "reduction": "cell", "ops": DARTS_OPS[1:]},
}
CELL_TYPES = ("normal", "reduce")


@dataclass(frozen=True)
class CellSpec:
    """A parsed, validated cell space file.

    ``stages`` is always empty: it is the chain spaces' field, kept so that code asking a space for
    its searched stage widths gets none.
    """

    name: str
    topology: str
    description: str
    source: str
    resolution: int
    num_classes: int
    in_channels: int
    ops: tuple[str, ...]
    channels: int
    stages_count: int
    cells_per_stage: int
    layers: int
    stem_multiplier: int
    affine: bool
    decisions: tuple[Decision, ...]
    presets: Mapping[str, Mapping[str, Any]]
    path: str = ""
    bn_eps: float = 1e-5
    stages: tuple = ()


def _fail(origin: str, field: str, msg: str) -> InputError:
    return InputError(f"{origin}: {field}: {msg}")


def _obj(origin: str, field: str, obj: Any, allowed: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict):
        raise _fail(origin, field, f"must be an object, got {type(obj).__name__}")
    for k in obj:
        if k not in allowed:
            raise _fail(origin, f"{field}.{k}", f"unknown field (allowed: {', '.join(allowed)})")
    return obj


def _int(origin: str, field: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(origin, field, f"must be an integer >= {minimum}, got {short(value)}")
    return value


def pair_options(node: int) -> tuple[str, ...]:
    """The input-pair options of DARTS intermediate node ``node``: ``"a,b"`` for a < b < node."""
    return tuple(f"{a},{b}" for a, b in itertools.combinations(range(node), 2))


def generate_decisions(topology: str, ops: tuple[str, ...]) -> tuple[Decision, ...]:
    """The decisions of a cell space (see the module docstring for their names)."""
    if topology == "nb201":
        return tuple(Decision(f"{i}<-{j}", ops, f"op of edge {j}->{i}") for i, j in EDGES)
    out = []
    for ct in CELL_TYPES:
        for j in range(NUM_INPUTS, NUM_INPUTS + _FIXED["darts"]["intermediate_nodes"]):
            out.append(Decision(f"{ct}.{j}.inputs", pair_options(j), f"{ct} cell: the two inputs of node {j}"))
            out.append(Decision(f"{ct}.{j}.op_a", ops, f"{ct} cell: op from node {j}'s first input"))
            out.append(Decision(f"{ct}.{j}.op_b", ops, f"{ct} cell: op from node {j}'s second input"))
    return tuple(out)


def genotype_choices(genotype: DartsGenotype) -> dict[str, str]:
    """DARTS genotype → choices: each node's two (op, input) pairs, sorted by input.

    Raises:
        InputError: for a node fed twice from one input (not expressible as a pair of inputs).
    """
    choices: dict[str, str] = {}
    for ct, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        for k in range(0, len(pairs), INPUTS_PER_NODE):
            node = NUM_INPUTS + k // INPUTS_PER_NODE
            (op_a, a), (op_b, b) = sorted(pairs[k:k + INPUTS_PER_NODE], key=lambda p: p[1])
            if a == b:
                raise InputError(f"the {ct} cell feeds node {node} twice from node {a}; a DARTS cell's node "
                                 f"takes two distinct inputs (Liu et al. 2019, Sec. 2.4).")
            choices.update({f"{ct}.{node}.inputs": f"{a},{b}", f"{ct}.{node}.op_a": op_a, f"{ct}.{node}.op_b": op_b})
    return choices


def _preset(origin: str, topology: str, name: str, value: Any) -> dict[str, Any]:
    field = f"presets.{name}"
    if isinstance(value, dict) and topology == "darts" and set(value) <= {"normal", "reduce"}:
        try:
            return genotype_choices(DartsGenotype(normal=value.get("normal", ()), reduce=value.get("reduce", ())))
        except InputError as e:
            raise _fail(origin, field, str(e)) from None
    if isinstance(value, str) and topology == "nb201":
        try:
            ops = parse_nb201(value)
        except InputError as e:
            raise _fail(origin, field, str(e)) from None
        return {f"{i}<-{j}": op for (i, j), op in zip(EDGES, ops)}
    if isinstance(value, dict):
        return dict(value)
    form = "a NAS-Bench-201 string" if topology == "nb201" else "a genotype {\"normal\": [...], \"reduce\": [...]}"
    raise _fail(origin, field, f"must be {form} or an object of decision → option")


def parse_cell_space(raw: Any, *, origin: str) -> CellSpec:
    """Parses a ``"kind": "cell"`` space file.

    Raises:
        InputError: naming the file and the offending field.
    """
    raw = _obj(origin, "space", raw, CELL_SPACE_KEYS)
    for k in ("name", "cell", "skeleton"):
        if k not in raw:
            raise _fail(origin, k, "is missing")
    cell = _obj(origin, "cell", raw["cell"], CELL_KEYS)
    topology = cell.get("topology")
    if topology not in TOPOLOGIES:
        raise _fail(origin, "cell.topology", f"must be one of {', '.join(TOPOLOGIES)}, got {short(topology)}")
    fixed = _FIXED[topology]
    sk = _obj(origin, "skeleton", raw["skeleton"], SKELETON_KEYS)
    for k, want in fixed.items():
        if k == "ops":
            continue
        where, got = ("skeleton", sk.get(k, want)) if k == "reduction" else ("cell", cell.get(k, want))
        if got != want:
            raise _fail(origin, f"{where}.{k}", f"the {topology} topology has {want!r}, got {short(got)}")
    ops = cell.get("ops", list(fixed["ops"]))
    if not isinstance(ops, list) or not ops or len(set(ops)) != len(ops):
        raise _fail(origin, "cell.ops", "must be a non-empty list of distinct op names")
    for i, op in enumerate(ops):
        if op not in fixed["ops"]:
            raise _fail(origin, f"cell.ops[{i}]", f"{short(op)} is not a {topology} op ({', '.join(fixed['ops'])})")
    if "none" in ops and ops[0] != "none":
        raise _fail(origin, "cell.ops", "must list 'none' first (an edge that reaches no output is written as its "
                                        "first option)")
    if topology == "nb201":
        stages, per_stage, layers, mult = _int(origin, "skeleton.stages", sk.get("stages", 3)), \
            _int(origin, "skeleton.cells_per_stage", sk.get("cells_per_stage", 5)), 0, 1
    else:
        stages, per_stage = 0, 0
        layers = _int(origin, "skeleton.layers", sk.get("layers", 8), minimum=3)
        mult = _int(origin, "skeleton.stem_multiplier", sk.get("stem_multiplier", 3))
    affine = sk.get("affine", True)
    if not isinstance(affine, bool):
        raise _fail(origin, "skeleton.affine", f"must be true or false, got {short(affine)}")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise _fail(origin, "name", "must be a non-empty string")
    presets_raw = raw.get("presets", {})
    if not isinstance(presets_raw, dict):
        raise _fail(origin, "presets", "must be an object of name → architecture")
    presets = {str(k): _preset(origin, topology, str(k), v) for k, v in presets_raw.items()}
    return CellSpec(
        name=name, description=str(raw.get("description", "")), source=str(raw.get("source", "")),
        resolution=_int(origin, "resolution", raw.get("resolution", 32), minimum=8),
        num_classes=_int(origin, "num_classes", raw.get("num_classes", 10)),
        in_channels=_int(origin, "in_channels", raw.get("in_channels", 3)),
        topology=topology, ops=tuple(ops), channels=_int(origin, "skeleton.channels", sk.get("channels", 16)),
        stages_count=stages, cells_per_stage=per_stage, layers=layers, stem_multiplier=mult, affine=affine,
        decisions=generate_decisions(topology, tuple(ops)), presets=presets, path=origin)
