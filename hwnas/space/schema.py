"""The search-space file format (``hwnas.space/1``): parsing and validation with field-named errors.

A space file declares the fixed parts of a network (stem, stages' widths and strides, head) and an
ordered list of named categorical decisions. Layer fields either hold a literal or reference a
decision as ``"$name"``; ``ops`` defines aliases for compound options (``"e6_k5"`` →
``{"op": "mbconv", "expand": 6, "kernel": 5}``). See ``search_spaces/README.md`` for the format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.safeio import short
from hwnas.space.blocks import ACTIVATIONS, FIXED_OPS, STAGE_OPS

FORMAT = "hwnas.space/1"

#: Fields a layer template (or its stage / an op alias, as defaults) may set.
LAYER_FIELDS = ("op", "kernel", "expand", "se", "act", "skip")
STAGE_KEYS = ("name", "out", "stride", "width", "depth", "layers", "repeat") + LAYER_FIELDS
FIXED_KEYS = ("op", "key", "out", "kernel", "stride", "act", "bn", "bias", "pool", "dropout")
SPACE_KEYS = (
    "format", "kind", "name", "description", "source", "resolution", "num_classes", "in_channels",
    "channel_divisor", "mid_divisor", "bn_eps", "se_style", "shuffle_proj",
    "ops", "stem", "stages", "head", "decisions", "presets",
)
SE_STYLES = ("ofa", "mnasnet")
SHUFFLE_PROJ = ("input", "half")
SKIP_VALUES = ("none", "identity")


def is_ref(value: Any) -> bool:
    """True for a decision reference such as ``"$s1_l2"``."""
    return isinstance(value, str) and value.startswith("$")


@dataclass(frozen=True)
class Decision:
    """One categorical decision: a name and its options (JSON scalars)."""

    name: str
    options: tuple[Any, ...]
    doc: str = ""


@dataclass(frozen=True)
class FixedLayer:
    """A stem or head layer (not searched). ``out`` is ``None`` for pools and the classifier."""

    op: str
    key: str
    out: int | None = None
    kernel: int = 1
    stride: int = 1
    act: str = "none"
    bn: bool = True
    bias: bool = False
    pool: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class Stage:
    """A stage: layers of one output width; the first layer carries the stride.

    ``layers`` are templates (field → literal or ``"$ref"``). With ``repeat`` the single template is
    used for every layer; ``depth`` (literal or ref) says how many layers run, at most
    ``len(layers)`` without ``repeat``.
    """

    name: str
    out: int
    stride: int
    layers: tuple[Mapping[str, Any], ...]
    repeat: bool
    depth: int | str
    width: float | str
    defaults: Mapping[str, Any]


@dataclass(frozen=True)
class SpaceSpec:
    """A parsed, validated space file."""

    name: str
    description: str
    source: str
    resolution: int
    num_classes: int
    in_channels: int
    channel_divisor: int
    mid_divisor: int
    bn_eps: float
    se_style: str
    shuffle_proj: str
    ops: Mapping[str, Mapping[str, Any]]
    stem: tuple[FixedLayer, ...]
    stages: tuple[Stage, ...]
    head: tuple[FixedLayer, ...]
    decisions: tuple[Decision, ...]
    presets: Mapping[str, Mapping[str, Any]]
    path: str = ""


class _Where:
    """Builds error messages that name the file and the field."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, field: str, msg: str) -> InputError:
        return InputError(f"{self.origin}: {field}: {msg}")


def _check_keys(w: _Where, field: str, obj: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise w.fail(field, f"must be an object, got {type(obj).__name__}")
    for k in obj:
        if k not in allowed:
            raise w.fail(f"{field}.{k}", f"unknown field (allowed: {', '.join(allowed)})")
    for k in required:
        if k not in obj:
            raise w.fail(f"{field}.{k}", "is missing")


def _int(w: _Where, field: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise w.fail(field, f"must be an integer >= {minimum}, got {short(value)}")
    return value


def _num(w: _Where, field: str, value: Any, *, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (lo <= value <= hi):
        raise w.fail(field, f"must be a number in [{lo}, {hi}], got {short(value)}")
    return float(value)


def _check_field_value(w: _Where, field: str, name: str, value: Any, ops: Mapping[str, Any]) -> None:
    """Checks one literal value of a layer field (also used for each option of a referenced decision)."""
    if name == "op":
        if value not in STAGE_OPS and value not in ops:
            raise w.fail(field, f"{short(value)} is neither an op ({', '.join(STAGE_OPS)}) nor an alias in ops")
    elif name == "kernel":
        if _int(w, field, value) % 2 == 0:
            raise w.fail(field, f"kernel must be odd, got {value}")
    elif name == "expand":
        _num(w, field, value, lo=1.0)
    elif name == "se":
        _num(w, field, value, lo=0.0, hi=1.0)
    elif name == "act":
        if value not in ACTIVATIONS:
            raise w.fail(field, f"{short(value)} is not one of {', '.join(ACTIVATIONS)}")
    elif name == "skip":
        if value not in SKIP_VALUES:
            raise w.fail(field, f"{short(value)} is not one of {', '.join(SKIP_VALUES)}")


def _parse_fixed(w: _Where, field: str, obj: Any) -> FixedLayer:
    _check_keys(w, field, obj, FIXED_KEYS, ("op", "key"))
    op = obj["op"]
    if op not in FIXED_OPS:
        raise w.fail(f"{field}.op", f"{short(op)} is not one of {', '.join(FIXED_OPS)}")
    if not isinstance(obj["key"], str) or not obj["key"]:
        raise w.fail(f"{field}.key", "must be a non-empty string (the latency-table key prefix)")
    out = obj.get("out")
    if op == "conv":
        out = _int(w, f"{field}.out", out)
    elif out is not None:
        raise w.fail(f"{field}.out", f"is not allowed for {op} (channels follow the input or the classes)")
    act = obj.get("act", "none")
    _check_field_value(w, f"{field}.act", "act", act, {})
    return FixedLayer(
        op=op,
        key=obj["key"],
        out=out,
        kernel=_int(w, f"{field}.kernel", obj.get("kernel", 3 if op in ("conv", "maxpool") else 1)),
        stride=_int(w, f"{field}.stride", obj.get("stride", 2 if op == "maxpool" else 1)),
        act=act,
        bn=bool(obj.get("bn", True)),
        bias=bool(obj.get("bias", op == "classifier")),
        pool=bool(obj.get("pool", True)),
        dropout=_num(w, f"{field}.dropout", obj.get("dropout", 0.0), lo=0.0, hi=0.99),
    )


def _parse_decisions(w: _Where, raw: Any) -> tuple[Decision, ...]:
    if not isinstance(raw, list) or not raw:
        raise w.fail("decisions", "must be a non-empty list")
    out: list[Decision] = []
    seen: set[str] = set()
    for i, d in enumerate(raw):
        field = f"decisions[{i}]"
        _check_keys(w, field, d, ("name", "options", "doc"), ("name", "options"))
        name = d["name"]
        if not isinstance(name, str) or not name or name.startswith("$"):
            raise w.fail(f"{field}.name", f"must be a non-empty string not starting with '$', got {short(name)}")
        if name in seen:
            raise w.fail(f"{field}.name", f"duplicate decision {short(name)}")
        seen.add(name)
        opts = d["options"]
        if not isinstance(opts, list) or not opts:
            raise w.fail(f"decisions[{i}] ({name}).options", "must be a non-empty list")
        for o in opts:
            if isinstance(o, bool) or not isinstance(o, (str, int, float)):
                raise w.fail(f"decisions[{i}] ({name}).options", f"options must be strings or numbers, got {short(o)}")
        if len(set(opts)) != len(opts):
            raise w.fail(f"decisions[{i}] ({name}).options", "options must be distinct")
        out.append(Decision(name=name, options=tuple(opts), doc=str(d.get("doc", ""))))
    return tuple(out)


def _parse_ops(w: _Where, raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise w.fail("ops", "must be an object of alias → layer fields")
    for alias, fields in raw.items():
        _check_keys(w, f"ops.{alias}", fields, LAYER_FIELDS, ("op",))
        if fields["op"] not in STAGE_OPS:
            raise w.fail(f"ops.{alias}.op", f"{short(fields['op'])} is not one of {', '.join(STAGE_OPS)}")
        for k, v in fields.items():
            if is_ref(v):
                raise w.fail(f"ops.{alias}.{k}", "aliases cannot reference decisions")
            if k != "op":
                _check_field_value(w, f"ops.{alias}.{k}", k, v, {})
    return raw


def _check_ref(w: _Where, field: str, ref: str, decisions: Mapping[str, Decision], name: str,
               ops: Mapping[str, Any]) -> None:
    d = decisions.get(ref[1:])
    if d is None:
        raise w.fail(field, f"references unknown decision {short(ref)}")
    for o in d.options:
        _check_field_value(w, f"{field} (option {short(o)} of {d.name})", name, o, ops)


def _parse_stage(w: _Where, i: int, raw: Any, decisions: Mapping[str, Decision],
                 ops: Mapping[str, Any]) -> Stage:
    field = f"stages[{i}]"
    _check_keys(w, field, raw, STAGE_KEYS, ("name", "out", "stride"))
    name = raw["name"]
    if not isinstance(name, str) or not name or "." in name:
        raise w.fail(f"{field}.name", f"must be a non-empty string without '.', got {short(name)}")
    field = f"stages[{i}] ({name})"
    has_layers, has_repeat = "layers" in raw, "repeat" in raw
    if has_layers == has_repeat:
        raise w.fail(field, "needs exactly one of 'layers' (a list of layer templates) or 'repeat' (one template)")
    templates = raw["layers"] if has_layers else [raw["repeat"]]
    if not isinstance(templates, list) or not templates:
        raise w.fail(f"{field}.layers", "must be a non-empty list")
    defaults = {k: raw[k] for k in LAYER_FIELDS if k in raw}
    for j, t in enumerate(templates):
        tf = f"{field}.layers[{j}]" if has_layers else f"{field}.repeat"
        _check_keys(w, tf, t, LAYER_FIELDS, ())
    for src, fields in [(field, defaults)] + [
        (f"{field}.layers[{j}]" if has_layers else f"{field}.repeat", t) for j, t in enumerate(templates)
    ]:
        for k, v in fields.items():
            if is_ref(v):
                _check_ref(w, f"{src}.{k}", v, decisions, k, ops)
            else:
                _check_field_value(w, f"{src}.{k}", k, v, ops)
    depth = raw.get("depth", len(templates) if has_layers else None)
    if depth is None:
        raise w.fail(f"{field}.depth", "is required with 'repeat'")
    max_depth = len(templates) if has_layers else None
    depth_values = decisions[depth[1:]].options if is_ref(depth) and depth[1:] in decisions else [depth]
    if is_ref(depth) and depth[1:] not in decisions:
        raise w.fail(f"{field}.depth", f"references unknown decision {short(depth)}")
    for dv in depth_values:
        _int(w, f"{field}.depth", dv)
        if max_depth is not None and dv > max_depth:
            raise w.fail(f"{field}.depth", f"depth {dv} exceeds the {max_depth} layer templates")
    width = raw.get("width", 1.0)
    for wv in decisions[width[1:]].options if is_ref(width) and width[1:] in decisions else [width]:
        if is_ref(wv):
            raise w.fail(f"{field}.width", f"references unknown decision {short(width)}")
        _num(w, f"{field}.width", wv, lo=0.01)
    return Stage(
        name=name,
        out=_int(w, f"{field}.out", raw["out"]),
        stride=_int(w, f"{field}.stride", raw["stride"]),
        layers=tuple(templates),
        repeat=has_repeat,
        depth=depth,
        width=width,
        defaults=defaults,
    )


def _refs_of_stage(stage: Stage) -> set[str]:
    vals = list(stage.defaults.values()) + [stage.depth, stage.width]
    for t in stage.layers:
        vals += list(t.values())
    return {v[1:] for v in vals if is_ref(v)}


def parse_space(raw: Any, *, origin: str) -> SpaceSpec:
    """Validates a space file's JSON and returns its ``SpaceSpec``.

    Raises:
        InputError: naming the file and the field, for any malformed or inconsistent entry.
    """
    w = _Where(origin)
    _check_keys(w, "space", raw, SPACE_KEYS, ("format", "name", "resolution", "stem", "stages", "head", "decisions"))
    if raw["format"] != FORMAT:
        raise w.fail("format", f"must be {FORMAT!r}, got {short(raw['format'])}")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise w.fail("name", "must be a non-empty string")
    decisions = _parse_decisions(w, raw["decisions"])
    by_name = {d.name: d for d in decisions}
    ops = _parse_ops(w, raw.get("ops"))
    for part in ("stem", "head", "stages"):
        if not isinstance(raw[part], list) or not raw[part]:
            raise w.fail(part, "must be a non-empty list")
    stem = tuple(_parse_fixed(w, f"stem[{i}]", s) for i, s in enumerate(raw["stem"]))
    head = tuple(_parse_fixed(w, f"head[{i}]", s) for i, s in enumerate(raw["head"]))
    if head[-1].op != "classifier":
        raise w.fail(f"head[{len(head) - 1}].op", "the last head layer must be the classifier")
    stages = tuple(_parse_stage(w, i, s, by_name, ops) for i, s in enumerate(raw["stages"]))
    if len({s.name for s in stages}) != len(stages):
        raise w.fail("stages", "stage names must be distinct")
    owner: dict[str, str] = {}
    for s in stages:
        for r in _refs_of_stage(s):
            if r in owner:
                raise w.fail(f"decisions ({r})", f"is used by stages {owner[r]} and {s.name}; a decision belongs to one stage")
            owner[r] = s.name
    unused = [d.name for d in decisions if d.name not in owner]
    if unused:
        raise w.fail(f"decisions ({unused[0]})", "is declared but no stage uses it")
    se_style = raw.get("se_style", "ofa")
    if se_style not in SE_STYLES:
        raise w.fail("se_style", f"{short(se_style)} is not one of {', '.join(SE_STYLES)}")
    shuffle_proj = raw.get("shuffle_proj", "half")
    if shuffle_proj not in SHUFFLE_PROJ:
        raise w.fail("shuffle_proj", f"{short(shuffle_proj)} is not one of {', '.join(SHUFFLE_PROJ)}")
    presets = raw.get("presets", {})
    if not isinstance(presets, dict):
        raise w.fail("presets", "must be an object of preset name → choices")
    return SpaceSpec(
        name=name,
        description=str(raw.get("description", "")),
        source=str(raw.get("source", "")),
        resolution=_int(w, "resolution", raw["resolution"], minimum=8),
        num_classes=_int(w, "num_classes", raw.get("num_classes", 1000)),
        in_channels=_int(w, "in_channels", raw.get("in_channels", 3)),
        channel_divisor=_int(w, "channel_divisor", raw.get("channel_divisor", 8)),
        mid_divisor=_int(w, "mid_divisor", raw.get("mid_divisor", 1)),
        bn_eps=_num(w, "bn_eps", raw.get("bn_eps", 1e-5), lo=0.0, hi=1.0),
        se_style=se_style,
        shuffle_proj=shuffle_proj,
        ops=ops,
        stem=stem,
        stages=stages,
        head=head,
        decisions=decisions,
        presets=presets,
        path=str(Path(origin)) if origin else "",
    )
