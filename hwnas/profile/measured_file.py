"""The store behind ``hwnas latency measure``: a ``hwnas.measured/1`` JSON-lines file, one line per
timed architecture, rewritten atomically after each one (temp file + rename), so a run killed at
any point leaves only whole lines and resumes where it stopped.

The first line records the device header and the steady estimator; a file measured with other
settings is refused on resume, since its numbers would not be comparable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.jsonio import atomic_write_bytes
from hwnas.latency.measured import arch_line, header_line, parse_arch, parse_lines
from hwnas.profile.steady import SteadySettings
from hwnas.profile.whole_model import STORE_SETTINGS
from hwnas.safeio import MAX_JSON_BYTES, read_bounded_bytes
from hwnas.space import arch_id

#: Fields of a timing entry copied into its line (besides ``latency_ms`` = ``steady_ms``).
LINE_FIELDS = ("spread_pct", "median_ms", "p10_ms", "p90_ms", "count", "unstable",
               "serial", "fleet", "disagreement_pct", "beyond_spread")  # the last four: a device fleet's


class MeasuredFile:
    """Keeps end-to-end timings in a measurements file (``time_archs``' store: ``get``, ``put``, ``steady``).

    Args:
        path: The ``.jsonl`` file; resumed when it exists.
        space: The space of the architectures.
        device: The device header of the backend (``Backend.header()``).
        steady: The estimator settings.

    Raises:
        InputError: when an existing file was measured on another space, device or estimator.
    """

    def __init__(self, path: str | Path, *, space, device: Mapping[str, Any], steady: SteadySettings) -> None:
        self.path = Path(path)
        self.space = space
        self.steady = steady
        self.header = header_line(device=device, space=space.name, estimator=steady.to_json())
        self.lines: list[dict[str, Any]] = []
        self._by_id: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._resume()

    def _resume(self) -> None:
        origin = f"measurements file {self.path}"
        text = read_bounded_bytes(self.path, what="measurements file", limit=MAX_JSON_BYTES).decode("utf-8", "replace")
        old, lines = parse_lines(text, origin=origin)
        if not old:
            raise InputError(f"{origin} has no header line, so hwnas did not write it; give another --out.")
        if old.get("space") != self.space.name:
            raise InputError(f"{origin} measured space {old.get('space')!r}, not {self.space.name}; give another --out.")
        if old.get("estimator") != self.header["estimator"]:
            raise InputError(f"{origin} was measured with other estimator settings (rounds, runs per round, "
                             f"warm-up) than this run; give another --out or the same settings.")
        have, want = old.get("device", {}), self.header["device"]
        diff = [k for k in STORE_SETTINGS if have.get(k) != want.get(k)]
        if diff:
            raise InputError(f"{origin} was measured with device.{diff[0]} {have.get(diff[0])!r}, this run has "
                             f"{want.get(diff[0])!r}; give another --out.")
        for no, obj in lines:
            a = parse_arch(self.space, obj.get("arch"), line=obj, where=f"{origin} line {no}")
            self.lines.append(obj)
            self._by_id[arch_id(self.space, a)] = obj

    def get(self, key: str) -> dict[str, Any] | None:
        """The timing entry of an arch (``steady_ms`` and spread), or None when not measured yet."""
        line = self._by_id.get(key)
        if line is None:
            return None
        return {"steady_ms": line["latency_ms"], **{k: line[k] for k in LINE_FIELDS if k in line}}

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Adds one timed arch and rewrites the file atomically."""
        arch = json.loads(key)
        line = arch_line(arch, float(entry["steady_ms"]), **{k: entry[k] for k in LINE_FIELDS if k in entry})
        self.lines.append(line)
        self._by_id[key] = line
        body = "".join(json.dumps(x) + "\n" for x in [self.header, *self.lines])
        atomic_write_bytes(self.path, body.encode())

    def __len__(self) -> int:
        return len(self.lines)
