"""Whole-model latency measurements: the ``hwnas.measured/1`` JSON-lines file (a contract).

One line per measured architecture::

    {"arch": <arch JSON object, or a NAS-Bench-201 string>, "latency_ms": 1.23, "spread_pct": 4.1, ...}

``arch`` and ``latency_ms`` are required; any other field (spread, device serial, the raw runs)
may follow and is kept as is. A NAS-Bench-201 string takes the space's resolution, width multiplier
and classes unless the line has ``"resolution"``, ``"width_mult"`` or ``"num_classes"``. An optional first line ``{"format": "hwnas.measured/1", "device": {...},
"space": ..., "estimator": {...}}`` says what measured the file: ``hwnas latency measure`` writes
it, and ``hwnas latency fit`` copies its device into the fitted table. Users with their own
timings (a vendor's ``benchmark_model``, a stopwatch on a board) write the same lines by hand.

Files are read as data: a bad line is refused with its line number and field, never evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.safeio import MAX_JSON_BYTES, read_bounded_bytes, short
from hwnas.space import arch_id

FORMAT = "hwnas.measured/1"


@dataclass(frozen=True)
class Measured:
    """Measured architectures of one space at one resolution, width multiplier and class count.

    Attributes:
        archs: Canonical architecture JSON, one per line, in file order (repeats merged: see ``read``).
        latency_ms: End-to-end latency of each, ms, shape (N,).
        rows: The other fields of each line (``spread_pct``, ...).
        header: The optional first line (``device``, ``space``, ``estimator``), or {}.
        path: Where it was read from.
    """

    archs: list[dict[str, Any]]
    latency_ms: np.ndarray
    rows: list[dict[str, Any]] = field(default_factory=list)
    header: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def settings(self) -> dict[str, Any]:
        """``resolution``, ``width_mult`` and ``num_classes`` shared by every arch."""
        a = self.archs[0]
        return {"resolution": int(a["resolution"]), "width_mult": float(a.get("width_mult", 1.0)),
                "num_classes": int(a["num_classes"])}

    def subset(self, index: Sequence[int]) -> "Measured":
        """The measurements at ``index`` (e.g. a fit sample), same header."""
        idx = list(index)
        return Measured(archs=[self.archs[i] for i in idx], latency_ms=self.latency_ms[idx],
                        rows=[self.rows[i] for i in idx], header=self.header, path=self.path)


def header_line(*, device: Mapping[str, Any], space: str, estimator: Mapping[str, Any] | None) -> dict[str, Any]:
    """The optional first line of a measurements file."""
    return {"format": FORMAT, "space": space, "device": dict(device), "estimator": dict(estimator or {})}


def arch_line(arch: Mapping[str, Any], latency_ms: float, **extra: Any) -> dict[str, Any]:
    """One line: the arch JSON object, ``latency_ms`` and ``extra`` fields."""
    return {"arch": dict(arch), "latency_ms": float(latency_ms), **extra}


def parse_lines(text: str, *, origin: str) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
    """The header (or {}) and ``(line number, object)`` of each non-empty line.

    Raises:
        InputError: for a line that is not a JSON object (naming the line), or a second header.
    """
    header: dict[str, Any] = {}
    out: list[tuple[int, dict[str, Any]]] = []
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{origin} line {no} is not valid JSON ({exc.msg}).") from None
        except RecursionError:
            raise InputError(f"{origin} line {no} nests its JSON too deeply.") from None
        if not isinstance(obj, dict):
            raise InputError(f"{origin} line {no} must be a JSON object, got {type(obj).__name__}.")
        if "format" in obj:
            if obj["format"] != FORMAT:
                raise InputError(f"{origin} line {no}: format must be {FORMAT!r}, got {short(obj['format'])}.")
            if header or out:
                raise InputError(f"{origin} line {no}: the header line (with 'format') must be the first line.")
            if not isinstance(obj.get("device", {}), dict):
                raise InputError(f"{origin} line {no}: device must be an object.")
            header = obj
            continue
        out.append((no, obj))
    return header, out


def read(path: str | Path, space) -> Measured:
    """Reads and validates a measurements file against ``space``.

    An architecture measured on several lines keeps the median of its latencies.

    Raises:
        InputError: naming the line and field: a missing or malformed ``arch``, a non-positive
            ``latency_ms``, an arch of another space, archs at different resolutions, width
            multipliers or class counts, or a file without any measurement.
    """
    p = Path(path)
    data = read_bounded_bytes(p, what="measurements file", limit=MAX_JSON_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"measurements file {p} is not a UTF-8 text file.") from None
    origin = f"measurements file {p}"
    header, lines = parse_lines(text, origin=origin)
    hs = header.get("space")
    if hs is not None and hs != space.name:
        raise InputError(f"{origin} measured archs of space {short(hs)}, not {space.name}.")
    by_id: dict[str, int] = {}
    archs: list[dict[str, Any]] = []
    lat: list[list[float]] = []
    rows: list[dict[str, Any]] = []
    scope: tuple | None = None
    for no, obj in lines:
        where = f"{origin} line {no}"
        a = parse_arch(space, obj.get("arch"), line=obj, where=where)
        ms = obj.get("latency_ms")
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not np.isfinite(ms) or ms <= 0:
            raise InputError(f"{where}: latency_ms must be a positive number of milliseconds, got {short(ms)}.")
        s = (a["resolution"], float(a.get("width_mult", 1.0)), a["num_classes"])
        if scope is None:
            scope = s
        elif s != scope:
            raise InputError(f"{where}: every arch must share resolution, width_mult and num_classes; this one "
                             f"has {s}, the first {scope}.")
        key = arch_id(space, a)
        if key in by_id:
            lat[by_id[key]].append(float(ms))
            continue
        by_id[key] = len(archs)
        archs.append(a)
        lat.append([float(ms)])
        rows.append({k: v for k, v in obj.items() if k not in ("arch", "latency_ms")})
    if not archs:
        raise InputError(f"{origin} holds no measurement (lines of {{\"arch\": ..., \"latency_ms\": ...}}).")
    return Measured(archs=archs, latency_ms=np.array([float(np.median(v)) for v in lat]), rows=rows,
                    header=header, path=str(p))


def parse_arch(space, raw: Any, *, line: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A line's ``arch``: an arch object of ``space``, or its NAS-Bench-201 string (canonical).

    A string takes ``resolution``, ``width_mult`` and ``num_classes`` from ``line`` where it has
    them, else the space's defaults.

    Raises:
        InputError: naming ``where`` and the field.
    """
    if isinstance(raw, str):
        if not hasattr(space, "from_string") or getattr(space.spec, "topology", None) != "nb201":
            raise InputError(f"{where}: arch is a string, but space {space.name} has no string form; "
                             f"give the arch JSON object.")
        given = {k: line[k] for k in ("resolution", "width_mult", "num_classes") if line.get(k) is not None}
        for k, v in given.items():
            ok = isinstance(v, (int, float)) if k == "width_mult" else isinstance(v, int)
            if isinstance(v, bool) or not ok or v <= 0:
                raise InputError(f"{where}: {k} must be a positive {'number' if k == 'width_mult' else 'integer'}, "
                                 f"got {short(v)}.")
        try:
            a = space.from_string(raw, **given)
        except InputError as exc:
            raise InputError(f"{where}: arch: {exc}") from None
    elif isinstance(raw, dict):
        if raw.get("space", space.name) != space.name:
            raise InputError(f"{where}: arch is of space {short(raw.get('space'))}, not {space.name}.")
        a = space.validate_arch({"space": space.name, **raw}, where=f"{where}: arch")
    else:
        raise InputError(f"{where}: arch must be an arch JSON object or a NAS-Bench-201 string, got "
                         f"{short(raw) if raw is not None else 'nothing'}.")
    return space.canonical(a)
