"""End-to-end validation and calibration of a latency model on the table's own device.

``hwnas latency validate`` samples random architectures of a space (seeded), builds and exports each,
measures it whole with the table's backend and settings (warm consecutive runs, as
``hwnas.profile.backend.measure_module`` and ``hwnas export`` time a model; see ``measure_archs``),
and compares the model's predictions with the measurements: the share within ±5% / ±10%, RMSE in
percent and MAPE, with and without calibration (nn-Meter, Zhang et al., MobiSys 2021, Sec. 6.2,
reports the ±10% accuracy; ProxylessNAS, Cai et al., ICLR 2019, Fig. 5, plots predicted against
measured on the y = x line). The calibration is fitted on a separate sample from the one it is
scored on: both samples come from independent seeded streams and never share an architecture.

Measurements can be kept in a JSON file (``--measurements``): an interrupted run resumes there.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.jsonio import atomic_write_bytes, read_json, write_json_atomic
from hwnas.latency.calibration import DEFAULT_FEATURES, Calibration, fit_calibration
from hwnas.latency.model import LatencyModel
from hwnas.latency.table import LatencyTable, entry_from_samples
from hwnas.safeio import short

#: Stream ids of ``np.random.default_rng([seed, stream])``: validation and calibration samples.
VALIDATION_STREAM, CALIBRATION_STREAM = 0, 1
STORE_FORMAT = "hwnas.e2e_measurements/1"
#: Backend settings that must agree for stored measurements to be reused.
STORE_SETTINGS = ("backend", "threads", "batch", "dtype", "channels_last", "name", "host", "processor", "versions")


@dataclass(frozen=True)
class ArchSettings:
    """Resolution, width multiplier and classes of the architectures a table covers."""

    resolution: int
    width_mult: float
    num_classes: int

    @classmethod
    def of(cls, table: LatencyTable, space) -> "ArchSettings":
        """From the table header (``resolution``, ``width_mult``, ``num_classes``), else the space's defaults."""
        d = table.device
        return cls(resolution=int(d.get("resolution") or space.spec.resolution),
                   width_mult=float(d.get("width_mult") or 1.0),
                   num_classes=int(d.get("num_classes") or space.spec.num_classes))


def arch_id(space, arch: dict[str, Any]) -> str:
    """A canonical string of an architecture (one per distinct network)."""
    return json.dumps(space.canonical(arch), sort_keys=True)


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


class MeasurementStore:
    """End-to-end measurements keyed by architecture, persisted atomically after each one (resume).

    Args:
        path: JSON file, or None to keep measurements in memory only.
        device: The table's ``device`` header; a file measured with other settings is refused.
        repeats: Timed runs per pass (part of the settings a file must share).
        warmup: Untimed runs per pass.
    """

    def __init__(self, path: str | Path | None, *, device: dict[str, Any], repeats: int, warmup: int) -> None:
        self.path = Path(path) if path else None
        self.settings = {**{k: device.get(k) for k in STORE_SETTINGS if k in device},
                         "repeats": repeats, "warmup": warmup}
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            raw = read_json(self.path, what="measurements file")
            if (not isinstance(raw, dict) or raw.get("format") != STORE_FORMAT
                    or not isinstance(raw.get("entries"), dict)):
                raise InputError(f"measurements file {self.path}: format must be {STORE_FORMAT!r}.")
            if raw.get("settings") != self.settings:
                raise InputError(f"measurements file {self.path} was measured with other settings (device "
                                 "or repeats/warmup) than this run; use another --measurements file.")
            self.entries = raw["entries"]

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Adds a measurement and rewrites the file (atomically)."""
        self.entries[key] = entry
        if self.path is not None:
            write_json_atomic(self.path, {"format": STORE_FORMAT, "settings": self.settings,
                                          "entries": self.entries}, indent=None)


def measure_archs(space, archs: Sequence[dict[str, Any]], *, table: LatencyTable, store: MeasurementStore,
                  repeats: int, warmup: int, commands: Any = None, passes: int = 3, chunk: int = 10, seed: int = 0,
                  desc: str = "measuring", progress: bool = True) -> list[float]:
    """Builds, exports and measures each architecture end to end; median ms each (stored ones reused).

    Each model is timed as ``measure_module`` (and so ``hwnas export``) times it: with the table's
    backend settings, ``warmup`` untimed runs, then ``repeats`` consecutive timed runs, warm, as a
    deployed model runs. To keep drift and background load from biasing one model against another,
    ``chunk`` models are prepared (exported) before any is timed, and they are timed in ``passes``
    passes, each in a freshly shuffled order; the median is over all ``passes × repeats`` samples.
    A ``remote`` table is measured with the user's ``commands`` (``RemoteCommands``), never its own.
    """
    import tempfile

    import torch
    from tqdm import tqdm

    from hwnas.space.build import build_model
    from hwnas.profile.backend import BackendConfig, make_backend

    if passes < 1 or chunk < 1:
        raise InputError(f"passes and chunk must be >= 1, got {passes} and {chunk}.")
    config = BackendConfig.from_header(table.device, commands=commands, origin=f"latency table {table.path}")
    keys = [arch_id(space, a) for a in archs]
    first: dict[str, int] = {}  # key → index of its first arch
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    pending = [i for k, i in first.items() if store.get(k) is None]
    rng = np.random.default_rng(seed)
    bar = tqdm(total=len(pending), desc=desc, unit="arch", file=sys.stderr, disable=not progress, leave=False)
    backend = make_backend(config) if pending else None
    try:
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            runners = {}
            samples: dict[str, list[float]] = {}
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    for i in part:  # prepare (export) everything before timing anything
                        torch.manual_seed(0)
                        model = build_model(space.resolve(archs[i]))
                        r = archs[i]["resolution"]
                        runners[keys[i]] = backend.prepare(model, (config.batch, 3, r, r), workdir=Path(tmp),
                                                           name=f"arch{i}")
                        samples[keys[i]] = []
                    order = list(runners)
                    with backend.timing_context():
                        for _ in range(passes):
                            rng.shuffle(order)
                            for k in order:
                                for _ in range(warmup):
                                    runners[k].run_once()
                                samples[k] += [runners[k].run_once() for _ in range(repeats)]  # ms
                finally:
                    for runner in runners.values():
                        runner.close()
            for k, v in samples.items():
                store.put(k, entry_from_samples(v))
            bar.update(len(part))
    finally:
        bar.close()
    return [float(store.get(k)["median_ms"]) for k in keys]


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, Any]:
    """Relative errors of predictions: share within ±5% / ±10%, RMSE %, MAPE %, mean (bias) %, max |%|."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    err = (p - m) / m * 100.0  # %
    return {"n": int(err.size), "within_5pct": float(np.mean(np.abs(err) <= 5.0)),
            "within_10pct": float(np.mean(np.abs(err) <= 10.0)), "rmse_pct": float(np.sqrt(np.mean(err**2))),
            "mape": float(np.mean(np.abs(err))), "bias_pct": float(np.mean(err)),
            "max_abs_pct": float(np.max(np.abs(err)))}


def default_repeats(table: LatencyTable) -> tuple[int, int]:
    """Repeats and warm-up runs of the table's profile (``device.repeats``/``warmup``), else 30 and 5."""
    return int(table.device.get("repeats") or 30), int(table.device.get("warmup") or 5)


def check_calibration_samples(n: int, *, flag: str) -> None:
    """Refuses fewer architectures than the calibration has coefficients, before measuring anything."""
    need = len(DEFAULT_FEATURES) + 1
    if n < need:
        raise InputError(f"{flag} must be at least {need} (one per calibration coefficient), got {n}.")


def check_measurable(table: LatencyTable, *, commands: Any, what: str = "measuring") -> None:
    """Fails early (``InputError``) when the table's backend cannot run here (e.g. an imported or
    synthetic table, or a ``remote`` one without the user's ``commands``); ``what`` starts the message."""
    from hwnas.profile.backend import BackendConfig, make_backend

    backend = table.device.get("backend")
    if backend in (None, "synthetic"):
        raise InputError(f"{what}: latency table {table.path} has no measurable device (device.backend "
                         f"{short(backend)}); use a table profiled with hwnas profile.")
    make_backend(BackendConfig.from_header(table.device, commands=commands, origin=f"{what}: latency table {table.path}"))


def fit_on(model: LatencyModel, space, archs: Sequence[dict[str, Any]], measured: Sequence[float], *,
           info: dict[str, Any]) -> Calibration:
    """Fits a calibration of the model's uncalibrated sums on measured architectures."""
    base = model.uncalibrated()
    preds = [base.predict(a, space=space) for a in archs]
    info = {**info, "space": space.name, "indices": [space.encode(a).tolist() for a in archs]}
    return fit_calibration(lut_sum_ms=[p.lut_sum_ms for p in preds], num_blocks=[p.num_blocks for p in preds],
                           measured_ms=measured, table=model.table, info=info)


def calibrate(model: LatencyModel, space, *, samples: int, seed: int, repeats: int, warmup: int,
              store: MeasurementStore, commands: Any = None, progress: bool = True) -> Calibration:
    """Measures ``samples`` random archs (calibration stream) and fits a calibration of the LUT sum."""
    check_calibration_samples(samples, flag="--samples")
    check_measurable(model.table, commands=commands)
    settings = ArchSettings.of(model.table, space)
    archs = sample_archs(space, n=samples, seed=seed, stream=CALIBRATION_STREAM, settings=settings)
    measured = measure_archs(space, archs, table=model.table, store=store, repeats=repeats, warmup=warmup,
                             commands=commands, seed=seed, desc="calibration archs", progress=progress)
    return fit_on(model, space, archs, measured, info={"seed": seed, "repeats": repeats, "warmup": warmup,
                                                       **asdict(settings)})


def validate(model: LatencyModel, space, *, samples: int, calibration_samples: int, seed: int, repeats: int,
             warmup: int, store: MeasurementStore, commands: Any = None, progress: bool = True) -> dict[str, Any]:
    """Scores the model on ``samples`` held-out random archs, calibrated and uncalibrated.

    With ``calibration_samples`` > 0 a fresh calibration is fitted on that many other archs; with 0
    the model's own (saved) calibration is scored, and the archs it was fitted on are kept out. The
    two samples are measured together, alternating within the same interleaved chunks, so load or
    clock drift during the run cannot bias the calibration against the scored sample.

    Returns:
        ``n, within_5pct, within_10pct, rmse_pct, mape, bias_pct, max_abs_pct`` of the model's
        answer, ``uncalibrated`` (the same for the plain LUT sum), ``calibration`` (or None) and
        ``archs`` (indices, measured, predicted, LUT sum).
    """
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}.")
    if calibration_samples != 0:
        check_calibration_samples(calibration_samples, flag="--calibration-samples (or 0)")
    check_measurable(model.table, commands=commands)
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
                     measure_archs(space, both, table=model.table, store=store, repeats=repeats, warmup=warmup,
                                   commands=commands, seed=seed, desc="measuring archs", progress=progress)))
    measured = [by_id[arch_id(space, a)] for a in archs]
    if cal_archs:
        cal = fit_on(model, space, cal_archs, [by_id[arch_id(space, a)] for a in cal_archs],
                     info={"seed": seed, "repeats": repeats, "warmup": warmup, **asdict(settings)})
    base = model.uncalibrated()
    preds = [base.predict(a, space=space) for a in archs]
    lut = [p.lut_sum_ms for p in preds]
    final = [p.lut_sum_ms if cal is None else cal.apply(lut_sum_ms=p.lut_sum_ms, num_blocks=p.num_blocks)
             for p in preds]
    result: dict[str, Any] = {**error_stats(final, measured), "uncalibrated": error_stats(lut, measured),
                              "calibrated": cal is not None, "calibration": cal.to_json() if cal else None,
                              "calibration_samples": calibration_samples, "seed": seed, "space": space.name,
                              "resolution": settings.resolution, "width_mult": settings.width_mult,
                              "num_classes": settings.num_classes, "repeats": repeats, "warmup": warmup,
                              "backend": model.table.device.get("backend"),
                              "threads": model.table.device.get("threads"),
                              "archs_with_estimates": sum(1 for p in preds if p.estimated)}
    result["archs"] = [{"indices": space.encode(a).tolist(), "measured_ms": m, "predicted_ms": f, "lut_sum_ms": s,
                        "num_blocks": p.num_blocks, "estimated": len(p.estimated)}
                       for a, m, f, s, p in zip(archs, measured, final, lut, preds)]
    return result


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
