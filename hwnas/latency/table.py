"""Latency lookup tables: the ``hwnas.latency_table/1`` JSON format (DESIGN.md, contract).

::

    {"format": "hwnas.latency_table/1",
     "device": {"name": ..., "backend": "ort-cpu", "threads": 1, "batch": 1, "dtype": "float32",
                "resolution": 224, "host": ..., "processor": ..., "versions": {...}},
     "created": "2026-11-22T10:00:00Z",
     "entries": {"<op key>": {"median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.1,
                              "p10_ms": 0.9, "p90_ms": 1.2, "count": 50}}}

Tables are written atomically. Prediction uses ``entry_ms``: the steady figure ``steady_ms`` of
tables profiled with the steady estimator (``device.estimator``), else ``median_ms`` (older and
imported tables; formats that only publish a mean carry that mean as the median and say so in
``device.source``).
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from hwnas.errors import IgnoredFieldWarning, InputError
from hwnas.jsonio import read_json, write_json_atomic
from hwnas.safeio import short
from hwnas.space import Block, op_key

FORMAT = "hwnas.latency_table/1"
#: Header fields of older tables that held commands; ignored when a table is read.
COMMAND_FIELDS = ("push_cmd", "run_cmd", "info_cmd")
ENTRY_FIELDS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "count")
#: Header fields that must agree for two tables to be merged (they change the numbers).
SETTINGS_FIELDS = ("name", "backend", "threads", "batch", "dtype", "processor", "host")
#: Further header fields that must agree when either table has them: backend options and the scope
#: of architectures the table serves (``versions`` and ``resolution`` are checked as well).
SCOPE_FIELDS = ("channels_last", "parser", "serial", "width_mult", "num_classes", "stat",
                "min_sample_ms")


def utc_now() -> str:
    """Current UTC time, ISO 8601 with a Z suffix, seconds precision."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class LatencyTable:
    """A device's per-op latency table (milliseconds)."""

    device: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    path: str = ""

    # ---- I/O -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Reads and validates a table file.

        Raises:
            InputError: for a missing file, another format, or a malformed entry (named).
        """
        raw = read_json(path, what="latency table")
        return cls.from_json(raw, origin=str(path))

    @classmethod
    def from_json(cls, raw: Any, *, origin: str = "table") -> "LatencyTable":
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise InputError(f"{origin}: format must be {FORMAT!r}, got {short(got)}.")
        device = raw.get("device")
        if not isinstance(device, dict) or not isinstance(device.get("backend"), str):
            raise InputError(f"{origin}: device must be an object with at least 'backend'.")
        device = _without_commands(device, origin=origin)
        entries = raw.get("entries")
        if not isinstance(entries, dict):
            raise InputError(f"{origin}: entries must be an object of key → statistics.")
        for key, e in entries.items():
            if not isinstance(e, dict):
                raise InputError(f"{origin}: entries[{short(key)}] must be an object.")
            for f in ("median_ms", "steady_ms"):
                m = e.get(f)
                if (f == "median_ms" or m is not None) and (isinstance(m, bool) or not isinstance(m, (int, float))
                                                            or m < 0):
                    raise InputError(f"{origin}: entries[{short(key)}].{f} must be a non-negative number, got {short(m)}.")
        return cls(device=device, entries=entries, created=str(raw.get("created", "")), path=origin)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "device": self.device, "created": self.created, "entries": self.entries}

    def save(self, path: str | Path) -> Path:
        """Writes the table atomically (temp file + rename)."""
        self.path = str(path)
        return write_json_atomic(path, self.to_json())

    # ---- lookup ----------------------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def ms(self, key: str) -> float:
        """Latency of one key, ms (``entry_ms``; KeyError when absent)."""
        return entry_ms(self.entries[key])

    def missing(self, blocks: Iterable[Block]) -> list[str]:
        """Keys of ``blocks`` absent from the table, in block order, without repeats."""
        seen: dict[str, None] = {}
        for b in blocks:
            k = op_key(b)
            if k is not None and k not in self.entries:
                seen[k] = None
        return list(seen)

    def check_resolution(self, resolution: int) -> None:
        """Refuses an architecture at another input resolution than the table's."""
        res = self.device.get("resolution")
        if isinstance(res, int) and res != resolution:
            raise InputError(f"latency table {self.path or ''} was measured at resolution {res}, "
                             f"but the architecture is at {resolution}; profile or import a table for {resolution}.")

    def check_arch(self, arch: Mapping[str, Any]) -> None:
        """Refuses an architecture outside the table's scope: another resolution, width multiplier or
        class count than the table's ``device`` header records (fields absent from the header pass).

        Raises:
            InputError: naming the table, the field and both values.
        """
        self.check_resolution(int(arch["resolution"]))
        for f in ("width_mult", "num_classes"):
            have, want = self.device.get(f), arch.get(f)
            if have is not None and want is not None and float(have) != float(want):
                raise InputError(f"latency table {self.path or ''} was measured for {f} {have}, but the "
                                 f"architecture has {want}; profile a table for {f} {want}.")

    def lookup_sum(self, blocks: Iterable[Block]) -> tuple[float, list[float | None]]:
        """Sum of the table's medians over ``blocks`` (skip blocks cost 0), with per-block values.

        Raises:
            InputError: naming the missing keys, when any block is absent from the table.
        """
        blocks = list(blocks)
        missing = self.missing(blocks)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise InputError(f"latency table {self.path or ''} has no entry for {len(missing)} block(s): "
                             f"{', '.join(missing[:3])}{more}.")
        per = [None if op_key(b) is None else self.ms(op_key(b)) for b in blocks]
        return float(sum(v for v in per if v is not None)), per

    # ---- merge -----------------------------------------------------------------------------

    def merge(self, other: "LatencyTable") -> "LatencyTable":
        """A new table with the entries of both; refused when the device settings differ.

        Entries present in both keep this table's value.
        """
        diffs = [f for f in SETTINGS_FIELDS if self.device.get(f) != other.device.get(f)]
        if self.device.get("versions") != other.device.get("versions"):
            diffs.append("versions")
        if self.device.get("resolution") != other.device.get("resolution"):
            diffs.append("resolution")
        diffs += [f for f in SCOPE_FIELDS if self.device.get(f) != other.device.get(f)]
        if diffs:
            f = diffs[0]
            raise InputError(f"cannot merge tables measured with different settings: device.{f} is "
                             f"{short(self.device.get(f))} in one and {short(other.device.get(f))} in the other.")
        device = dict(self.device)
        spaces = list(dict.fromkeys(list(self.device.get("spaces", [])) + list(other.device.get("spaces", []))))
        if spaces:
            device["spaces"] = spaces
        return LatencyTable(device=device, entries={**other.entries, **self.entries}, created=utc_now())


def _without_commands(device: dict[str, Any], *, origin: str) -> dict[str, Any]:
    """The header without command fields (older tables had them); warns that they were ignored.

    A table is data: hwnas never runs a command it names (see SECURITY.md).
    """

    found = [f for f in COMMAND_FIELDS if f in device]
    if not found:
        return device
    warnings.warn(f"latency table {origin}: ignoring device.{', device.'.join(found)} (hwnas never runs commands "
                  f"from a file; give remote commands with --device-config)", IgnoredFieldWarning, stacklevel=3)
    return {k: v for k, v in device.items() if k not in COMMAND_FIELDS}


def entry_from_samples(samples_ms: list[float]) -> dict[str, Any]:
    """Summary statistics of repeated measurements, ms (the table's entry fields)."""
    import numpy as np

    a = np.asarray(samples_ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(a)),
        "mean_ms": float(a.mean()),
        "std_ms": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "p10_ms": float(np.percentile(a, 10)),
        "p90_ms": float(np.percentile(a, 90)),
        "count": int(a.size),
    }


def entry_ms(entry: Mapping[str, Any]) -> float:
    """The latency an entry stands for, ms: ``steady_ms`` when present (the steady estimator,
    ``hwnas.profile.steady``), else ``median_ms`` (older and imported tables). The one place that decides."""
    v = entry.get("steady_ms")
    return float(entry["median_ms"] if v is None else v)


def entry_cv(entry: Mapping[str, Any]) -> float:
    """Coefficient of variation of an entry: std / mean (0 when unknown)."""
    mean, std = entry.get("mean_ms") or 0.0, entry.get("std_ms") or 0.0
    return float(std) / float(mean) if mean else 0.0
