"""End-to-end validation and calibration of a latency model on the table's own device.

``hwnas latency validate`` samples random architectures of a space (seeded), builds and exports each,
measures it whole with the table's backend and settings and the steady estimator (interleaved short
rounds, a low quantile of round medians, as ``hwnas.profile.measure.measure_module`` and ``hwnas
export`` time a model; see ``measure_archs``), and compares the model's predictions with the measurements: the share within ±5% / ±10%, RMSE in
percent and MAPE, with and without calibration (nn-Meter, Zhang et al., MobiSys 2021, Sec. 6.2,
reports the ±10% accuracy; ProxylessNAS, Cai et al., ICLR 2019, Fig. 5, plots predicted against
measured on the y = x line). The calibration is fitted on a separate sample from the one it is
scored on: both samples come from independent seeded streams and never share an architecture.

Measurements can be kept in a JSON file (``--measurements``): an interrupted run resumes there.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.jsonio import atomic_write_bytes
from hwnas.latency.calibration import DEFAULT_FEATURES, Calibration, fit_calibration
from hwnas.latency.model import LatencyModel
from hwnas.space import ArchSettings, arch_id

#: Stream ids of ``np.random.default_rng([seed, stream])``: validation and calibration samples.
VALIDATION_STREAM, CALIBRATION_STREAM = 0, 1
#: Measures architectures end to end on the table's device: (archs, progress label) → the steady
#: figure (ms) of each, in order (``hwnas.profile.whole_model.table_measure``).
Measure = Callable[[Sequence[dict[str, Any]], str], list[float]]
#: The spread (%, ``hwnas.profile.steady.spread_pct`` of the round medians) of each measured arch.
Spreads = Callable[[Sequence[dict[str, Any]]], list[Any]]


def spread_stats(spreads: Sequence[Any]) -> dict[str, Any]:
    """``median_spread_pct`` and ``max_spread_pct`` of measured spreads (%; None where none is known).

    Example: spreads [2.0, 4.0, 12.0] give a median of 4.0 and a max of 12.0.
    """
    v = np.asarray([float(x) for x in spreads if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"median_spread_pct": None, "max_spread_pct": None}
    return {"median_spread_pct": float(np.median(v)), "max_spread_pct": float(v.max())}


def sample_archs(space, *, n: int, seed: int, stream: int, settings: ArchSettings,
                 exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """``n`` distinct random architectures (canonical), none of whose ids is in ``exclude``.

    Raises:
        InputError: when the space has fewer distinct networks than asked for.
    """
    rng = np.random.default_rng([seed, stream])
    seen = set(exclude)
    out: list[dict[str, Any]] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise InputError(f"space {space.name} has too few distinct architectures for {n} samples "
                             f"(found {len(out)} new ones); lower --samples or --calibration-samples.")
        a = space.canonical(space.sample(rng, resolution=settings.resolution, width_mult=settings.width_mult,
                                         num_classes=settings.num_classes))
        key = arch_id(space, a)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, Any]:
    """Relative errors of predictions: share within ±5% / ±10%, RMSE %, MAPE %, mean (bias) %, max |%|."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    err = (p - m) / m * 100.0  # %
    return {"n": int(err.size), "within_5pct": float(np.mean(np.abs(err) <= 5.0)),
            "within_10pct": float(np.mean(np.abs(err) <= 10.0)), "rmse_pct": float(np.sqrt(np.mean(err**2))),
            "mape": float(np.mean(np.abs(err))), "bias_pct": float(np.mean(err)),
            "max_abs_pct": float(np.max(np.abs(err)))}


def check_calibration_samples(n: int, *, flag: str) -> None:
    """Refuses fewer architectures than the calibration has coefficients, before measuring anything."""
    need = len(DEFAULT_FEATURES) + 1
    if n < need:
        raise InputError(f"{flag} must be at least {need} (one per calibration coefficient), got {n}.")


def fit_on(model: LatencyModel, space, archs: Sequence[dict[str, Any]], measured: Sequence[float], *,
           info: dict[str, Any]) -> Calibration:
    """Fits a calibration of the model's uncalibrated sums on measured architectures."""
    base = model.uncalibrated()
    preds = [base.predict(a, space=space) for a in archs]
    info = {**info, "space": space.name, "indices": [space.encode(a).tolist() for a in archs]}
    return fit_calibration(lut_sum_ms=[p.lut_sum_ms for p in preds], num_blocks=[p.num_blocks for p in preds],
                           measured_ms=measured, table=model.table, info=info)


def calibrate(model: LatencyModel, space, *, samples: int, seed: int, measure: Measure,
              info: Mapping[str, Any], spreads: Spreads | None = None) -> Calibration:
    """Measures ``samples`` random archs (calibration stream) and fits a calibration of the LUT sum.

    Args:
        model: The latency model whose table sums are calibrated.
        space: The space the archs are drawn from.
        samples: Number of random archs (at least one per coefficient).
        seed: Seed of the random archs.
        measure: Times archs end to end on the table's device (steady figures).
        info: How they were timed (``repeats``, ``warmup``, ``estimator``), recorded in the calibration.
        spreads: The spread of each measured arch; its ``spread_stats`` are recorded too.
    """
    check_calibration_samples(samples, flag="--samples")
    settings = ArchSettings.of(model.table, space)
    archs = sample_archs(space, n=samples, seed=seed, stream=CALIBRATION_STREAM, settings=settings)
    measured = measure(archs, "calibration archs")
    spread = spread_stats(spreads(archs)) if spreads is not None else {}
    return fit_on(model, space, archs, measured, info={"seed": seed, **info, **spread, **asdict(settings)})


def validate(model: LatencyModel, space, *, samples: int, calibration_samples: int, seed: int, measure: Measure,
             info: Mapping[str, Any], spreads: Spreads | None = None) -> dict[str, Any]:
    """Scores the model on ``samples`` held-out random archs, calibrated and uncalibrated.

    With ``calibration_samples`` > 0 a fresh calibration is fitted on that many other archs; with 0
    the model's own (saved) calibration is scored, and the archs it was fitted on are kept out. The
    two samples are measured together, alternating within the same interleaved chunks, so load or
    clock drift during the run cannot bias the calibration against the scored sample.

    Args:
        model: The latency model scored (its calibration is used when ``calibration_samples`` is 0).
        space: The space the archs are drawn from.
        samples: Held-out archs scored.
        calibration_samples: Other archs a fresh calibration is fitted on (0: the model's own).
        seed: Seed of the random archs.
        measure: Times archs end to end on the table's device (steady figures, the measured ms).
        info: How they were timed (``repeats``, ``warmup``, ``estimator``), recorded in the result.
        spreads: The spread of each measured arch (``median_spread_pct``/``max_spread_pct`` of the
            scored archs, and ``spread_pct`` per arch); None: not reported.

    Returns:
        ``n, within_5pct, within_10pct, rmse_pct, mape, bias_pct, max_abs_pct`` of the model's
        answer, ``uncalibrated`` (the same for the plain LUT sum), ``calibration`` (or None),
        ``median_spread_pct``/``max_spread_pct`` and ``archs`` (indices, measured, predicted, LUT sum,
        spread).
    """
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}.")
    if calibration_samples != 0:
        check_calibration_samples(calibration_samples, flag="--calibration-samples (or 0)")
    settings = ArchSettings.of(model.table, space)
    cal = model.calibration if calibration_samples == 0 else None
    exclude: list[str] = []
    if cal is not None:
        exclude = [arch_id(space, space.decode(i, resolution=settings.resolution, width_mult=settings.width_mult,
                                               num_classes=settings.num_classes))
                   for i in cal.fit.get("indices", []) if len(i) == len(space.decisions)]
    archs = sample_archs(space, n=samples, seed=seed, stream=VALIDATION_STREAM, settings=settings, exclude=exclude)
    cal_archs = sample_archs(space, n=calibration_samples, seed=seed, stream=CALIBRATION_STREAM, settings=settings,
                             exclude=[arch_id(space, a) for a in archs]) if calibration_samples else []
    both = [a for pair in itertools.zip_longest(archs, cal_archs) for a in pair if a is not None]
    by_id = dict(zip((arch_id(space, a) for a in both),
                     measure(both, "measuring archs")))
    measured = [by_id[arch_id(space, a)] for a in archs]
    spread = spreads(archs) if spreads is not None else [None] * len(archs)
    if cal_archs:
        cal_spread = spread_stats(spreads(cal_archs)) if spreads is not None else {}
        cal = fit_on(model, space, cal_archs, [by_id[arch_id(space, a)] for a in cal_archs],
                     info={"seed": seed, **info, **cal_spread, **asdict(settings)})
    base = model.uncalibrated()
    preds = [base.predict(a, space=space) for a in archs]
    lut = [p.lut_sum_ms for p in preds]
    final = [p.lut_sum_ms if cal is None else cal.apply(lut_sum_ms=p.lut_sum_ms, num_blocks=p.num_blocks)
             for p in preds]
    result: dict[str, Any] = {**error_stats(final, measured), "uncalibrated": error_stats(lut, measured),
                              "calibrated": cal is not None, "calibration": cal.to_json() if cal else None,
                              "calibration_samples": calibration_samples, "seed": seed, "space": space.name,
                              "resolution": settings.resolution, "width_mult": settings.width_mult,
                              "num_classes": settings.num_classes, **info, **spread_stats(spread),
                              "backend": model.table.device.get("backend"),
                              "threads": model.table.device.get("threads"),
                              "archs_with_estimates": sum(1 for p in preds if p.estimated)}
    result["archs"] = [{"indices": space.encode(a).tolist(), "measured_ms": m, "predicted_ms": f, "lut_sum_ms": s,
                        "num_blocks": p.num_blocks, "estimated": len(p.estimated), "spread_pct": sp}
                       for a, m, f, s, p, sp in zip(archs, measured, final, lut, preds, spread)]
    if space.kind == "cell":
        counts = [len(space.decisions) - len(space.active_decisions(a)) for a in archs]
        result.update(dead_edge_split(counts, final, measured))
        for row, n in zip(result["archs"], counts):
            row["dead_edges"] = n
    return result


def dead_edge_split(dead_edges: Sequence[int], predicted: Sequence[float],
                    measured: Sequence[float]) -> dict[str, Any]:
    """Cell spaces: the error stats of archs with dead edges (``none`` or cut off) and of the others.

    Args:
        dead_edges: Dead edges per arch (decisions that do not change its network).
        predicted: Predicted ms per arch.
        measured: Measured ms per arch.

    Returns:
        ``dead_edge_share`` (fraction of archs with at least one dead edge), ``dead_edge_archs`` and
        ``live_archs`` (``error_stats`` of each group, None when the group is empty).
    """
    dead = np.asarray(dead_edges) > 0
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    return {"dead_edge_share": float(dead.mean()) if dead.size else 0.0,
            "dead_edge_archs": error_stats(p[dead], m[dead]) if dead.any() else None,
            "live_archs": error_stats(p[~dead], m[~dead]) if (~dead).any() else None}


def plot_scatter(result: dict[str, Any], path: str | Path, *, title: str = "") -> Path:
    """Predicted vs measured latency (calibrated and LUT sum) with the y = x line and ±10% band, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["archs"]
    meas = np.array([r["measured_ms"] for r in rows])
    lut = np.array([r["lut_sum_ms"] for r in rows])
    pred = np.array([r["predicted_ms"] for r in rows])
    lo = float(min(meas.min(), lut.min(), pred.min())) * 0.9
    hi = float(max(meas.max(), lut.max(), pred.max())) * 1.1
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    line = np.array([lo, hi])
    ax.plot(line, line, "k-", lw=1, label="y = x")
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10%")
    u = result["uncalibrated"]
    ax.scatter(meas, lut, s=14, marker="x", color="tab:orange",
               label=f"LUT sum: {u['within_10pct'] * 100:.0f}% within ±10%, RMSE {u['rmse_pct']:.1f}%")
    if result.get("calibrated"):
        ax.scatter(meas, pred, s=14, color="tab:blue",
                   label=f"calibrated: {result['within_10pct'] * 100:.0f}% within ±10%, RMSE {result['rmse_pct']:.1f}%")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title or f"{result['space']} @ {result['resolution']}px, {result['backend']}, n = {result['n']}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
