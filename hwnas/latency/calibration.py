"""Calibration of the lookup-table sum against end-to-end measurements of whole models.

The sum of per-block table latencies is biased: each block profiled alone pays the framework's
per-call overhead (session run, input copy) that a whole model pays once, and it misses the cache
and scheduling effects between neighbouring ops. ProxylessNAS (Cai et al., ICLR 2019, Sec. 3.3 and
Fig. 5) and nn-Meter (Zhang et al., MobiSys 2021, Sec. 2) both report this gap. The calibration is a
linear model fitted by least squares on measured architectures:

    latency ≈ a · lut_sum_ms + b · num_blocks + c,

minimizing the *relative* squared error Σ ((pred − meas) / meas)². Every feature is a sum over blocks,
so the calibrated latency is itself a per-block sum plus a constant (block ms ↦ a · ms + b). That
keeps the vectorized predictor and the differentiable expected latency exact after calibration.

Stored as JSON next to the table (``<table stem>.calibration.json``), with the table's fingerprint:
a calibration fitted for another table is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.safeio import short
from hwnas.jsonio import read_json, write_json_atomic
from hwnas.latency.table import LatencyTable, utc_now

FORMAT = "hwnas.latency_calibration/1"

#: Per-block additive features a calibration may use: name → description.
FEATURES: dict[str, str] = {
    "lut_sum_ms": "sum over blocks of the table (or estimated) latency, ms",
    "num_blocks": "number of blocks with a table key (skip layers excluded)",
}
DEFAULT_FEATURES = ("lut_sum_ms", "num_blocks")


def table_fingerprint(table: LatencyTable) -> str:
    """SHA-256 of a table's device header and entries (canonical JSON), ``sha256:<hex>``.

    Content-based, so re-saving a table keeps its calibration, while re-profiling or merging
    (which changes the numbers) invalidates it.
    """
    blob = json.dumps({"device": table.device, "entries": table.entries}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def calibration_path(table_path: str | Path) -> Path:
    """Where the calibration of a table lives: ``<dir>/<table stem>.calibration.json``."""
    p = Path(table_path)
    return p.with_name(f"{p.stem}.calibration.json")


@dataclass(frozen=True)
class Calibration:
    """A fitted linear correction of the LUT sum.

    Attributes:
        features: Feature names (keys of ``FEATURES``), in coefficient order.
        coef: One coefficient per feature (``lut_sum_ms``: dimensionless; ``num_blocks``: ms per block).
        intercept_ms: Constant term, ms.
        table: Fingerprint of the table it was fitted for (``table_fingerprint``).
        table_created: The table's ``created`` stamp (for people).
        fit: How it was fitted: ``n``, ``space``, ``seed``, ``rmse_pct`` and ``mape`` on the fit sample, ...
        created: When it was fitted (UTC).
    """

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept_ms: float
    table: str
    table_created: str = ""
    fit: Mapping[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)

    def per_block(self) -> tuple[float, float]:
        """The calibration as a per-block map ``ms ↦ scale · ms + per_block_ms``: (scale, per_block_ms)."""
        c = dict(zip(self.features, self.coef))
        return c.get("lut_sum_ms", 0.0), c.get("num_blocks", 0.0)

    def apply(self, *, lut_sum_ms: float, num_blocks: int) -> float:
        """Calibrated end-to-end latency, ms."""
        scale, per_block = self.per_block()
        return scale * lut_sum_ms + per_block * num_blocks + self.intercept_ms

    def check_table(self, table: LatencyTable, *, origin: str = "calibration") -> None:
        """Refuses to apply this calibration to a table it was not fitted for."""
        if table_fingerprint(table) != self.table:
            raise InputError(f"{origin} was fitted for another latency table (created {self.table_created or '?'}) "
                             f"than {table.path or 'this table'}; rerun 'hwnas latency calibrate'.")

    # ---- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(self.features), "coef": list(self.coef),
                "intercept_ms": self.intercept_ms, "table": self.table, "table_created": self.table_created,
                "created": self.created, "fit": dict(self.fit)}

    @classmethod
    def from_json(cls, raw: Any, *, origin: str = "calibration") -> "Calibration":
        """Parses and validates a calibration object (plain JSON, no pickle).

        Raises:
            InputError: naming the malformed field.
        """
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise InputError(f"{origin}: format must be {FORMAT!r}, got {short(got)}.")
        feats, coef = raw.get("features"), raw.get("coef")
        if not isinstance(feats, list) or not all(isinstance(f, str) and f in FEATURES for f in feats):
            raise InputError(f"{origin}: features must be a list of {sorted(FEATURES)}, got {short(feats)}.")
        if not isinstance(coef, list) or len(coef) != len(feats) or not all(_is_num(c) for c in coef):
            raise InputError(f"{origin}: coef must be {len(feats)} finite numbers, got {short(coef)}.")
        if not _is_num(raw.get("intercept_ms")):
            raise InputError(f"{origin}: intercept_ms must be a finite number, got {short(raw.get('intercept_ms'))}.")
        if not isinstance(raw.get("table"), str) or not raw["table"].startswith("sha256:"):
            raise InputError(f"{origin}: table must be the 'sha256:...' fingerprint of the latency table.")
        fit = raw.get("fit", {})
        if not isinstance(fit, dict):
            raise InputError(f"{origin}: fit must be an object.")
        return cls(features=tuple(feats), coef=tuple(float(c) for c in coef), intercept_ms=float(raw["intercept_ms"]),
                   table=raw["table"], table_created=str(raw.get("table_created", "")), fit=fit,
                   created=str(raw.get("created", "")))

    def save(self, path: str | Path) -> Path:
        """Writes the calibration atomically."""
        return write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path, *, table: LatencyTable | None = None) -> "Calibration":
        """Reads a calibration file; with ``table``, refuses one fitted for another table."""
        cal = cls.from_json(read_json(path, what="calibration file"), origin=f"calibration file {path}")
        if table is not None:
            cal.check_table(table, origin=f"calibration file {path}")
        return cal


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def fit_calibration(*, lut_sum_ms: Sequence[float], num_blocks: Sequence[int], measured_ms: Sequence[float],
                    table: LatencyTable, features: Sequence[str] = DEFAULT_FEATURES,
                    info: Mapping[str, Any] | None = None) -> Calibration:
    """Fits ``measured ≈ Σ coef · feature + intercept`` by relative least squares.

    Args:
        lut_sum_ms: Per architecture, the sum of its blocks' table (or estimated) latencies, ms.
        num_blocks: Per architecture, the number of blocks with a table key.
        measured_ms: Per architecture, the end-to-end median latency, ms.
        table: The table the LUT sums came from (its fingerprint is stored).
        features: Which features to use (subset of ``FEATURES``).
        info: Extra facts to store under ``fit`` (space, seed, settings).

    Raises:
        InputError: with fewer architectures than coefficients, or non-positive measurements.
    """
    for f in features:
        if f not in FEATURES:
            raise InputError(f"calibration feature {f!r} is unknown (features: {', '.join(FEATURES)}).")
    cols = {"lut_sum_ms": np.asarray(lut_sum_ms, dtype=np.float64),
            "num_blocks": np.asarray(num_blocks, dtype=np.float64)}
    y = np.asarray(measured_ms, dtype=np.float64)
    n_coef = len(features) + 1
    if y.size < n_coef:
        raise InputError(f"calibration needs at least {n_coef} measured architectures, got {y.size}.")
    if (y <= 0).any() or not np.isfinite(y).all():
        raise InputError("calibration needs positive, finite end-to-end measurements.")
    x = np.stack([cols[f] for f in features] + [np.ones_like(y)], axis=1)  # N, F + 1
    # relative least squares: rows scaled by 1 / measured
    sol, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    pred = x @ sol
    err = (pred - y) / y * 100.0  # %
    fit = {"n": int(y.size), "rmse_pct": float(np.sqrt(np.mean(err**2))), "mape": float(np.mean(np.abs(err))),
           **dict(info or {})}
    return Calibration(features=tuple(features), coef=tuple(float(c) for c in sol[:-1]),
                       intercept_ms=float(sol[-1]), table=table_fingerprint(table), table_created=table.created,
                       fit=fit)
