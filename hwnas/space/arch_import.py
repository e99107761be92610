"""Importers of published architectures into hwnas architecture JSON (``hwnas arch import``).

* **Once-for-All subnet encoding** (Cai et al., ICLR 2020, Sec. 3.1; ``OFAMobileNetV3.set_active_subnet``):
  ``{"ks": [20 kernels], "e": [20 expand ratios], "d": [5 depths]}`` (optionally ``"r"``: the
  resolution, an int or a one-element list, and ``"wid": null``). The 20 entries are 5 stages × 4
  layer slots; slot ``j`` of stage ``i`` is used when ``j < d[i]``, and the values of unused slots
  are ignored (the arch gets the canonical first option there). Target space: ``ofa-mbv3`` (width
  1.2, the default) or ``ofa-mbv3-w10`` (width 1.0), or any space whose stages have a depth decision
  and per-layer kernel / expand decisions.
* **ProxylessNAS net config** (Cai et al., ICLR 2019; ``ProxylessNASNets.build_from_config`` of
  mit-han-lab/proxylessnas): ``first_conv``, ``blocks[]`` (``MBInvertedConvLayer`` with
  ``in/out_channels``, ``kernel_size``, ``stride``, ``expand_ratio``, or a ``ZeroLayer`` = skipped
  layer) with ``shortcut``, ``feature_mix_layer`` and ``classifier``. The shipped spaces are tried in
  turn (or only ``space``); the arch of the first space whose resolved blocks reproduce every layer
  of the config (widths, kernels, strides, expanded widths, shortcuts, head) is returned.
"""

from __future__ import annotations

from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.safeio import short
from hwnas.space.loader import load_space, space_names
from hwnas.space.schema import is_ref
from hwnas.space.search_space import SearchSpace

OFA_DEFAULT_SPACE = "ofa-mbv3"
_OFA_KEYS = {"ks", "e", "d", "r", "wid", "image_size"}


# ---- Once-for-All ---------------------------------------------------------------------------------

def _ofa_layout(sp: SearchSpace) -> list[tuple[str, list[tuple[str, str]]]]:
    """``[(depth decision, [(kernel decision, expand decision) per layer slot])]`` per searchable stage."""
    layout = []
    for s in sp.spec.stages:
        if not is_ref(s.depth):
            continue
        slots = []
        for t in s.layers:
            k, e = t.get("kernel"), t.get("expand")
            if not (is_ref(k) and is_ref(e)):
                raise InputError(f"space {sp.name}: stage {s.name} has no per-layer kernel/expand decisions, "
                                 "so it cannot take a Once-for-All encoding.")
            slots.append((k[1:], e[1:]))
        layout.append((s.depth[1:], slots))
    if not layout:
        raise InputError(f"space {sp.name} has no stage with a depth decision; use an ofa-mbv3 space for --format ofa.")
    return layout


def _int_list(raw: Mapping[str, Any], key: str, n: int, where: str) -> list[Any]:
    v = raw.get(key)
    if not isinstance(v, list) or len(v) != n:
        raise InputError(f"{where}: field {short(key)} must be a list of {n} numbers, got {short(v)}.")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise InputError(f"{where}: {key}[{i}] must be a number, got {short(x)}.")
    return v


def _resolution(raw: Mapping[str, Any], where: str) -> int | None:
    r = raw.get("r", raw.get("image_size"))
    if isinstance(r, list):
        if len(r) != 1:
            raise InputError(f"{where}: field 'r' must be one resolution, got {short(r)}.")
        r = r[0]
    if r is None:
        return None
    if isinstance(r, bool) or not isinstance(r, int) or r < 8:
        raise InputError(f"{where}: field 'r' must be an integer resolution >= 8, got {short(r)}.")
    return r


def ofa_to_arch(raw: Any, *, space: str | SearchSpace = OFA_DEFAULT_SPACE, resolution: int | None = None,
                where: str = "OFA encoding") -> tuple[SearchSpace, dict[str, Any]]:
    """Converts an OFA subnet encoding ``{"ks", "e", "d"[, "r"]}`` into an arch of an OFA space.

    Args:
        raw: The parsed encoding.
        space: ``ofa-mbv3`` (w1.2), ``ofa-mbv3-w10`` (w1.0) or a compatible space (name, path or object).
        resolution: Overrides ``r`` (default: ``r``, else the space's resolution).
        where: Names the input in error messages.

    Returns:
        ``(space, arch)``, the arch validated and canonical (unused slots at their first option).

    Raises:
        InputError: naming the field, e.g. ``ks[5]``, that has no matching option.
    """
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a JSON object with 'ks', 'e' and 'd'.")
    unknown = sorted(set(raw) - _OFA_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown field {short(unknown[0])} (expected ks, e, d and optionally r, wid).")
    if raw.get("wid") not in (None, 0):
        raise InputError(f"{where}: field 'wid' is {short(raw['wid'])}; only the fixed-width OFA networks (wid null) are supported.")
    layout = _ofa_layout(sp)
    n_slots = sum(len(slots) for _, slots in layout)
    ks = _int_list(raw, "ks", n_slots, where)
    es = _int_list(raw, "e", n_slots, where)
    ds = _int_list(raw, "d", len(layout), where)
    opts = {d.name: d.options for d in sp.decisions}
    choices: dict[str, Any] = {d.name: d.options[0] for d in sp.decisions}
    i = 0
    for si, (depth_name, slots) in enumerate(layout):
        if ds[si] not in opts[depth_name]:
            raise InputError(f"{where}: d[{si}] = {short(ds[si])} is not a depth of space {sp.name} (options: {list(opts[depth_name])}).")
        choices[depth_name] = ds[si]
        for j, (k_name, e_name) in enumerate(slots):
            if j < ds[si]:  # a used slot; unused slots are ignored
                for field, vals, name in (("ks", ks, k_name), ("e", es, e_name)):
                    if vals[i] not in opts[name]:
                        raise InputError(f"{where}: {field}[{i}] = {short(vals[i])} is not an option of {name} "
                                         f"in space {sp.name} (options: {list(opts[name])}).")
                    choices[name] = vals[i]
            i += 1
    res = resolution or _resolution(raw, where)
    arch = sp.make_arch(choices, resolution=res)
    return sp, sp.canonical(arch)


# ---- ProxylessNAS ---------------------------------------------------------------------------------

def _layer_of(block: Any, i: int, where: str) -> dict[str, Any]:
    """One config block as ``{"skip": bool, cin, cout, kernel, stride, ratio, residual}``."""
    if not isinstance(block, dict) or not isinstance(block.get("mobile_inverted_conv"), dict):
        raise InputError(f"{where}: blocks[{i}] must be an object with 'mobile_inverted_conv'.")
    conv = block["mobile_inverted_conv"]
    shortcut = block.get("shortcut")
    if conv.get("name") == "ZeroLayer":
        if shortcut is None:
            raise InputError(f"{where}: blocks[{i}] is a ZeroLayer without a shortcut (a block that outputs zeros).")
        return {"skip": True}
    if conv.get("name") != "MBInvertedConvLayer":
        raise InputError(f"{where}: blocks[{i}].mobile_inverted_conv.name is {short(conv.get('name'))}; "
                         "expected MBInvertedConvLayer or ZeroLayer.")
    try:
        return {"skip": False, "cin": int(conv["in_channels"]), "cout": int(conv["out_channels"]),
                "kernel": int(conv["kernel_size"]), "stride": int(conv["stride"]),
                "ratio": float(conv["expand_ratio"]), "residual": shortcut is not None}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: blocks[{i}].mobile_inverted_conv lacks a valid {exc} field.") from None


def _head(raw: Mapping[str, Any], where: str) -> dict[str, int]:
    try:
        return {"stem": int(raw["first_conv"]["out_channels"]), "mix": int(raw["feature_mix_layer"]["out_channels"]),
                "classes": int(raw["classifier"]["out_features"])}
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: needs first_conv.out_channels, feature_mix_layer.out_channels and "
                         "classifier.out_features (a ProxylessNAS net config).") from None


def _option_for(sp: SearchSpace, decision: str, field: str, layer: dict[str, Any]) -> Any:
    """The option of ``decision`` that gives ``layer`` (its ``op`` alias, kernel or expand)."""
    d = next(x for x in sp.decisions if x.name == decision)
    for o in d.options:
        if field == "op":
            if layer["skip"] and o == "skip":
                return o
            alias = sp.spec.ops.get(o) if isinstance(o, str) else None
            if (not layer["skip"] and alias and alias.get("op", "mbconv") == "mbconv"
                    and float(alias.get("expand", 6)) == layer["ratio"] and int(alias.get("kernel", 3)) == layer["kernel"]):
                return o
        elif (not layer["skip"] and isinstance(o, (int, float)) and not isinstance(o, bool)
              and float(o) == layer["kernel" if field == "kernel" else "ratio"]):
            return o
    return None


def _match_proxyless(sp: SearchSpace, layers: list[dict[str, Any]], head: dict[str, int],
                     resolution: int | None) -> tuple[dict[str, Any] | None, str]:
    """The arch of ``sp`` that reproduces the config, or ``(None, why not)``."""
    templates = []
    for s in sp.spec.stages:
        if is_ref(s.depth) or s.repeat:
            return None, "its stages are not fixed lists of layers"
        templates += list(s.layers)
    if len(templates) != len(layers):
        return None, f"it has {len(templates)} layers, the config {len(layers)}"
    choices = {d.name: d.options[0] for d in sp.decisions}
    for i, (t, layer) in enumerate(zip(templates, layers)):
        for field in ("op", "kernel", "expand"):
            v = t.get(field)
            if is_ref(v):
                o = _option_for(sp, v[1:], field, layer)
                if o is None:
                    return None, f"blocks[{i + 1}] has no matching option of {v[1:]}"
                choices[v[1:]] = o
    arch = sp.make_arch(choices, resolution=resolution, num_classes=head["classes"])
    blocks = sp.resolve(arch)
    body = [b for b in blocks if b.slot.split(".")[0] not in ("stem", "head")]
    stem = [b for b in blocks if b.slot.startswith("stem.")]
    head_blocks = [b for b in blocks if b.slot.startswith("head.")]
    if stem[0].cout != head["stem"]:
        return None, f"stem width {stem[0].cout} != {head['stem']}"
    for i, (b, layer) in enumerate(zip(body, layers)):
        if layer["skip"]:
            if b.op != "skip":
                return None, f"blocks[{i}] is skipped in the config"
            continue
        mid = layer["cin"] if layer["ratio"] == 1 else int(round(layer["cin"] * layer["ratio"]))
        got = (b.op, b.cin, b.cout, b.kernel, b.stride, b.mid, b.residual)
        want = ("mbconv", layer["cin"], layer["cout"], layer["kernel"], layer["stride"], mid, layer["residual"])
        if got != want:
            return None, f"blocks[{i}] differs (op, cin, cout, kernel, stride, mid, residual: {got} vs {want})"
    convs = [b for b in head_blocks if b.op == "conv"]
    if not convs or convs[0].cout != head["mix"]:
        return None, f"feature-mix width {convs[0].cout if convs else None} != {head['mix']}"
    return sp.canonical(arch), ""


def proxyless_to_arch(raw: Any, *, space: str | SearchSpace | None = None, resolution: int | None = None,
                      where: str = "ProxylessNAS config") -> tuple[SearchSpace, dict[str, Any]]:
    """Converts a ProxylessNAS net config into an arch of the space with its widths.

    Args:
        raw: The parsed net config (``proxyless_{mobile,gpu,cpu}.config``).
        space: Only try this space; default: every shipped space, ``proxyless*`` first.
        resolution: The arch's resolution (default: the space's, 224).
        where: Names the input in error messages.

    Raises:
        InputError: when no space reproduces the config (with each space's first difference).
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("blocks"), list) or not raw["blocks"]:
        raise InputError(f"{where}: must be a ProxylessNAS net config with a non-empty 'blocks' list.")
    head = _head(raw, where)
    layers = [_layer_of(b, i, where) for i, b in enumerate(raw["blocks"])]
    if space is not None:
        candidates = [space if isinstance(space, SearchSpace) else load_space(space)]
    else:
        names = sorted(space_names(), key=lambda n: (not n.startswith("proxyless"), n))
        candidates = [load_space(n) for n in names]
    reasons = []
    for sp in candidates:
        try:
            arch, why = _match_proxyless(sp, layers, head, resolution)
        except InputError as exc:
            arch, why = None, str(exc)
        if arch is not None:
            return sp, arch
        reasons.append(f"{sp.name}: {why}")
    raise InputError(f"{where}: no search space reproduces this net ({'; '.join(reasons[:4])}).")


IMPORTERS = {"ofa": ofa_to_arch, "proxyless": proxyless_to_arch}
