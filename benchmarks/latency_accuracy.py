"""End-to-end accuracy of the latency model on this machine (issue 4).

For each (space, table) pair: 100 held-out random architectures are built, exported and measured
whole with the table's own backend and settings, and compared with the model's prediction, with
and without a calibration fitted on a separate sample (``hwnas.latency.validate.validate``, the
code behind ``hwnas latency validate``). Targets: share within ±10% ≥ 95% (stretch 99%).

    .venv/bin/python benchmarks/latency_accuracy.py       # the two cases below, 100 + 30 archs each
    .venv/bin/python benchmarks/latency_accuracy.py --case proxyless=T1 --case mobilenetv2=T2 --samples 5

Default cases: ``proxyless`` on ``latency_tables/cpu-ort-1t_r224.json`` (224x224, 1000 classes) and
``mobilenetv2`` on ``latency_tables/cpu-ort-1t_r32.json`` (the small CPU-run setting, 32x32, 10
classes), both made by ``benchmarks/make_tables.py``.

Measurements are kept under ``--work`` (one file per case): an interrupted run resumes. Plots
(``<work>/<space>.png``) show predicted vs measured with the y = x line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CASES = [f"proxyless={ROOT / 'latency_tables' / 'cpu-ort-1t_r224.json'}",
                 f"mobilenetv2={ROOT / 'latency_tables' / 'cpu-ort-1t_r32.json'}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", metavar="SPACE=TABLE",
                    help="a search space and the latency table to validate on it (repeatable; default: "
                         + ", ".join(DEFAULT_CASES) + ")")
    ap.add_argument("--samples", type=int, default=100, help="held-out archs per case (default 100)")
    ap.add_argument("--calibration-samples", type=int, default=30, help="archs the calibration is fitted on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=0,
                    help="archs timed side by side per interleaved session (default 0: all of a case's archs)")
    ap.add_argument("--work", default="benchmarks/out/latency_accuracy", help="measurements and plots")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    from hwnas.latency.model import LatencyModel
    from hwnas.latency.validate import plot_scatter, validate
    from hwnas.profile.whole_model import MeasurementStore, default_repeats, table_measure
    from hwnas.space.loader import load_space

    cases = args.case or DEFAULT_CASES
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        space_name, sep, table_path = case.partition("=")
        if not sep:
            ap.error(f"--case {case!r}: expected SPACE=TABLE")
        sp = load_space(space_name)
        model = LatencyModel.load(table_path, calibration=False)
        repeats, warmup = default_repeats(model.table)
        store = MeasurementStore(work / f"{sp.name}.measurements.json", device=model.table.device, repeats=repeats,
                                 warmup=warmup)
        t0 = time.perf_counter()
        chunk = args.chunk or args.samples + args.calibration_samples
        measure = table_measure(sp, table=model.table, store=store, repeats=repeats, warmup=warmup, seed=args.seed,
                                chunk=chunk)
        r = validate(model, sp, samples=args.samples, calibration_samples=args.calibration_samples, seed=args.seed,
                     measure=measure, spreads=measure.spreads, info={"repeats": repeats, "warmup": warmup,
                                                                     "chunk": chunk})
        r["seconds"] = round(time.perf_counter() - t0, 1)
        r["table"] = table_path
        r["plot"] = str(plot_scatter(r, work / f"{sp.name}.png"))
        r["processor"] = model.table.device.get("processor")
        results.append(r)
    out = {"cases": [{k: v for k, v in r.items() if k != "archs"} for r in results],
           "python": platform.python_version()}
    (work / "summary.json").write_text(json.dumps({"cases": results}, indent=1))
    if args.json:
        print(json.dumps(out))
        return 0
    print("| space | resolution | table | archs (held out / calibration) | within ±5% | within ±10% | RMSE % "
          "| MAPE % | within ±10% uncal. | RMSE % uncal. | MAPE % uncal. |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        u = r["uncalibrated"]
        print(f"| {r['space']} | {r['resolution']} | {Path(r['table']).name} | {r['n']} / {r['calibration_samples']} | "
              f"{r['within_5pct']:.0%} | {r['within_10pct']:.0%} | {r['rmse_pct']:.2f} | {r['mape']:.2f} | "
              f"{u['within_10pct']:.0%} | {u['rmse_pct']:.2f} | {u['mape']:.2f} |")
    for r in results:
        c = r["calibration"]
        print(f"{r['space']}: calibration latency ≈ {c['coef'][0]:.4f}·LUT {c['coef'][1]:+.4f} ms·blocks "
              f"{c['intercept_ms']:+.4f} ms; bias {r['bias_pct']:+.2f}% "
              f"(uncal. {r['uncalibrated']['bias_pct']:+.2f}%); {r['seconds']} s; plot {r['plot']}")
    print(f"processor: {results[0]['processor']}; backend {results[0]['backend']}, {results[0]['threads']} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
