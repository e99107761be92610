"""Importers of published latency lookup tables into ``hwnas.latency_table/1``.

* **ProxylessNAS** (Cai et al., ICLR 2019, Sec. 3.3; ``mobile_trim.yaml`` of
  ``search/utils/latency_estimator.py``, Google Pixel 1 per the paper's mobile setting):
  ``key: {count, mean, var}`` with MBConv keys
  ``expanded_conv-input:HxWxC-output:H'xW'xC'-expand:<ratio>-kernel:K-stride:S-idskip:I``. The expand
  *ratio* becomes the mid (depthwise) channel count ``round(cin × ratio)`` (``cin`` for ratio 1, as
  the ProxylessNAS ``MBInvertedConvLayer`` builds it) and ``-se:0-hs:0`` is appended (the space has
  neither), giving DESIGN.md's keys. ``std = sqrt(var)``.
* **Once-for-All** (Cai et al., ICLR 2020, Sec. 3.4; ``<R>_lookup_table.yaml`` of
  ``ofa/tutorial/latency_table.py``, Samsung Note10): ``key: {count, mean, std}`` with keys already in
  DESIGN.md's form (``expand`` = mid channels, ``se``, ``hs``).

Both formats publish a mean, not a median or percentiles: the mean is stored as ``median_ms`` (what
prediction reads) and as ``mean_ms``, ``p10_ms``/``p90_ms`` are ``null``, and the ``device`` header
says so (``"stat": "mean"``, ``"source": "imported:<format> <file>"``). All values are milliseconds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from hwnas.errors import InputError
from hwnas.latency.table import LatencyTable, utc_now
from hwnas.safeio import MAX_YAML_BYTES, load_yaml_text, read_bounded_bytes, short
from hwnas.space import parse_key

#: ``--format`` value → importer.
IMPORTERS: dict[str, Callable[..., LatencyTable]] = {}


def register_importer(name: str):
    """Registers an importer function under a ``--format`` name."""

    def deco(fn):
        IMPORTERS[name] = fn
        return fn

    return deco


def _load_yaml(path: str | Path) -> dict[str, Any]:
    """A published table of at most ``MAX_YAML_BYTES``, parsed without anchors or aliases."""
    import yaml

    p = Path(path)
    data = read_bounded_bytes(p, what="latency table", limit=MAX_YAML_BYTES)
    try:
        raw = load_yaml_text(data.decode("utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        why = f": {problem}" if problem == "anchors and aliases are not allowed" else ""
        raise InputError(f"latency table {p} is not valid YAML{where}{why}.") from None
    except UnicodeDecodeError:
        raise InputError(f"latency table {p} is not a UTF-8 text file.") from None
    except RecursionError:
        raise InputError(f"latency table {p} nests its YAML too deeply.") from None
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"latency table {p} must be a YAML mapping of key → {{count, mean, ...}}.")
    return raw


def _number(v: Any, *, where: str, field: str, low: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < low:
        raise InputError(f"{where}: field {field!r} must be a number >= {low}, got {short(v)}.")
    return float(v)


def _entry(value: Any, *, where: str, spread: str) -> dict[str, Any]:
    """An hwnas entry from ``{count, mean, var|std}`` (ms)."""
    if not isinstance(value, dict) or "mean" not in value:
        raise InputError(f"{where}: must be a mapping with 'mean' (ms), 'count' and '{spread}'.")
    mean = _number(value["mean"], where=where, field="mean")
    s = value.get(spread)
    if s is None:
        std = None
    else:
        s = _number(s, where=where, field=spread)
        std = math.sqrt(s) if spread == "var" else s
    count = value.get("count")
    if count is not None:
        count = int(_number(count, where=where, field="count", low=1))
    return {"median_ms": mean, "mean_ms": mean, "std_ms": std, "p10_ms": None, "p90_ms": None, "count": count}


def _parse(key: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(key, str):
        raise InputError(f"{where}: key {short(key)} is not a string.")
    try:
        return parse_key(key)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}.") from None


def proxyless_key(key: str, *, where: str = "table") -> str:
    """A ProxylessNAS ``mobile_trim.yaml`` key in DESIGN.md's convention (expand ratio → mid channels).

    Example:
        ``expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0`` →
        ``expanded_conv-input:112x112x16-output:56x56x24-expand:48-kernel:5-stride:2-idskip:0-se:0-hs:0``.
    """
    f = _parse(key, where=where)
    if f["op"] is None:  # Conv, Conv_1, Logits: same form in both conventions
        return key
    if f["op"] != "mbconv" or not {"expand", "kernel", "stride", "idskip"} <= set(f):
        raise InputError(f"{where}: key {short(key)} is not a ProxylessNAS expanded_conv key.")
    if "se" in f or "hs" in f:
        raise InputError(f"{where}: key {short(key)} already has se/hs fields; is this a Once-for-All table (--format ofa)?")
    ratio = f["expand"]
    mid = f["cin"] if ratio == 1 else int(round(f["cin"] * ratio))
    return (f"expanded_conv-input:{f['hw']}x{f['hw']}x{f['cin']}-output:{f['out_hw']}x{f['out_hw']}x{f['cout']}"
            f"-expand:{mid}-kernel:{f['kernel']}-stride:{f['stride']}-idskip:{f['idskip']}-se:0-hs:0")


def _stem_resolution(keys: list[str], where: str) -> int:
    stems = [k for k in keys if k.startswith("Conv-input:")]
    if len(stems) != 1:
        raise InputError(f"{where}: expected exactly one stem key 'Conv-input:RxRx3-...', found {len(stems)}.")
    return int(parse_key(stems[0])["hw"])


@register_importer("proxyless")
def import_proxyless_yaml(path: str | Path) -> LatencyTable:
    """Converts a ProxylessNAS ``mobile_trim.yaml`` (``{count, mean, var}``, expand ratios).

    Args:
        path: The YAML file.

    Returns:
        A table of the ``proxyless`` space at 224 px, width 1.0, 1000 classes (``device.stat`` =
        ``mean``; ``std_ms = sqrt(var)``; percentiles ``null``).

    Raises:
        InputError: naming the file and key of any entry that does not convert.
    """
    p = Path(path)
    raw = _load_yaml(p)
    entries: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        where = f"{p}: entry {short(key)}"
        new = proxyless_key(key, where=where)
        if new in entries:
            raise InputError(f"{where}: converts to {short(new)}, which another entry already produced.")
        entries[new] = _entry(value, where=where, spread="var")
    resolution = _stem_resolution(list(entries), str(p))
    return _imported_table(
        p, entries, name="pixel1", resolution=resolution, space="proxyless", source="proxyless",
        processor="unknown (Google Pixel 1 per the ProxylessNAS paper's mobile setting; the file names no device)",
        framework="TensorFlow Lite (ProxylessNAS paper, mobile setting)")


def _imported_table(p: Path, entries: dict[str, dict[str, Any]], *, name: str, resolution: int, space: str,
                    source: str, processor: str, framework: str) -> LatencyTable:
    """The table of an imported file: entries sorted, a device header saying where they came from."""
    device = {
        "name": name, "backend": "imported", "batch": 1, "dtype": "float32", "resolution": resolution,
        "width_mult": 1.0, "num_classes": _classes(entries), "spaces": [space],
        "processor": processor, "framework": framework,
        "source": f"imported:{source} {p.name}", "stat": "mean",
    }
    return LatencyTable(device=device, entries=dict(sorted(entries.items())), created=utc_now(), path=str(p))


@register_importer("ofa")
def import_ofa_yaml(path: str | Path, *, resolution: int | None = None) -> LatencyTable:
    """Converts a Once-for-All ``<R>_lookup_table.yaml`` (``{count, mean, std}``, mid channels).

    Args:
        path: The YAML file.
        resolution: Expected input resolution; inferred from the stem key when ``None``.

    Returns:
        A table of the ``ofa-mbv3`` (width 1.2) space at that resolution (``device.stat`` = ``mean``).

    Raises:
        InputError: naming the file and key of any entry that does not convert, or when the stem
            key's resolution differs from ``resolution``.
    """
    p = Path(path)
    raw = _load_yaml(p)
    entries: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        where = f"{p}: entry {short(key)}"
        f = _parse(key, where=where)
        if f["op"] == "mbconv" and not {"expand", "kernel", "stride", "idskip", "se", "hs"} <= set(f):
            raise InputError(f"{where}: an expanded_conv key needs expand, kernel, stride, idskip, se and hs "
                             "(a ProxylessNAS table? use --format proxyless).")
        entries[key] = _entry(value, where=where, spread="std")
    inferred = _stem_resolution(list(entries), str(p))
    if resolution is not None and resolution != inferred:
        raise InputError(f"{p}: the stem key is at resolution {inferred}, not the requested {resolution}.")
    return _imported_table(
        p, entries, name="note10", resolution=inferred, space="ofa-mbv3", source="ofa",
        processor="unknown (Samsung Note10 per the Once-for-All lookup-table path ofa/note10/)",
        framework="TensorFlow Lite (Once-for-All)")


def _classes(entries: dict[str, Any]) -> int | None:
    logits = [parse_key(k)["cout"] for k in entries if k.startswith("Logits-")]
    return logits[0] if len(logits) == 1 else None


def import_table(fmt: str, path: str | Path) -> LatencyTable:
    """Imports ``path`` with the importer of ``fmt`` (``proxyless`` or ``ofa``)."""
    if fmt not in IMPORTERS:
        raise InputError(f"--format {fmt!r} is unknown (formats: {', '.join(sorted(IMPORTERS))}).")
    return IMPORTERS[fmt](path)
