"""Scoring a latency model against timings that already exist (``hwnas latency validate --measured``).

No re-timing: the measured file's archs are encoded once and predicted together by the vectorized
``BatchPredictor``, so thousands of lines score in seconds. Reports the contract statistics of
``hwnas.latency.validate.error_stats`` plus the rank agreement that a search relies on: Spearman ρ
and Kendall τ between predicted and measured latency (HELP, Lee et al., NeurIPS 2021, Sec. 4,
reports Spearman ρ; nn-Meter, Zhang et al., MobiSys 2021, Sec. 6.2, the ±10% accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.latency.batch import BatchPredictor
from hwnas.latency.measured import Measured
from hwnas.latency.model import LatencyModel
from hwnas.latency.validate import dead_edge_split, error_stats, spread_stats
from hwnas.rankstats import kendall_tau, spearman


def score_measured(model: LatencyModel, space, measured: Measured) -> dict[str, Any]:
    """The model's predictions of measured archs, scored.

    Raises:
        InputError: for a table at another resolution, width multiplier or class count than the
            measured archs (``LatencyTable.check_arch``).
    """
    s = measured.settings
    pred = BatchPredictor.build(model, space, resolution=s["resolution"], width_mult=s["width_mult"],
                                num_classes=s["num_classes"])
    idx = np.stack([space.encode(a) for a in measured.archs])
    final, lut = pred.latency(idx), pred.lut_sum(idx)
    y = np.asarray(measured.latency_ms, dtype=np.float64)
    spreads = [r.get("spread_pct") if isinstance(r.get("spread_pct"), (int, float)) else None for r in measured.rows]
    result: dict[str, Any] = {
        **error_stats(final, y), "spearman": spearman(final, y), "kendall": kendall_tau(final, y),
        "uncalibrated": {**error_stats(lut, y), "spearman": spearman(lut, y)},
        "calibrated": model.calibration is not None, "space": space.name, **s,
        "measured_file": measured.path, "measured": "file", "backend": model.table.device.get("backend"),
        "threads": model.table.device.get("threads"), "table_source": model.table.device.get("source", "profiled"),
        "archs_with_estimates": None, "estimated_keys": len(pred.estimated), **spread_stats(spreads)}
    result["archs"] = [{"indices": i.tolist(), "measured_ms": float(m), "predicted_ms": float(f), "lut_sum_ms": float(u),
                        "spread_pct": sp} for i, m, f, u, sp in zip(idx, y, final, lut, spreads)]
    if space.kind == "cell":
        counts = [len(space.decisions) - len(space.active_decisions(a)) for a in measured.archs]
        result.update(dead_edge_split(counts, final, y))
    return result
