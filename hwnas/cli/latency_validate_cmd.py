"""``hwnas latency validate``: measure random archs end to end and score the latency model."""

from __future__ import annotations

import argparse

from hwnas.cli.latency_calibrate_cmd import add_measure_args, estimator_line, repeats_from_args, store_from_args
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.latency import LatencyModel, plot_scatter, validate
from hwnas.latency.held_out import score_measured
from hwnas.latency.measured import read
from hwnas.profile import table_measure
from hwnas.profile.device_config import commands_from_args
from hwnas.safeio import check_writable_output
from hwnas.space import load_space


@command("latency validate", help="measure N random archs end to end and compare with the predictions")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="latency table JSON")
    p.add_argument("--space", required=True, help="search space to sample architectures from")
    p.add_argument("--samples", type=int, help="number of held-out random archs to measure and score "
                   "(required unless --measured)")
    p.add_argument("--measured", help="score against the timings in this measurements file (.jsonl) instead of "
                   "measuring: no re-timing, batch prediction")
    p.add_argument("--calibration-samples", type=int, default=20,
                   help="other random archs to fit a fresh calibration on (default 20; 0: use the table's "
                        "saved calibration, if any)")
    p.add_argument("--plot", help="write a predicted-vs-measured scatter (PNG) here")
    add_measure_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    if args.measured:
        return run_measured(args)
    if args.samples is None:
        raise InputError("--samples is required unless --measured gives the timings.")
    for flag, path in (("--plot", args.plot), ("--measurements", args.measurements)):
        if path:
            check_writable_output(path, flag=flag)
    commands = commands_from_args(args)
    model = LatencyModel.load(args.table, calibration=args.calibration_samples == 0)
    sp = load_space(args.space)
    repeats, warmup = repeats_from_args(args, model.table)
    store = store_from_args(args, model.table)
    measure = table_measure(sp, table=model.table, store=store, repeats=repeats, warmup=warmup, seed=args.seed,
                            commands=commands, progress=not args.no_progress, chunk=args.chunk)
    result = validate(model, sp, samples=args.samples, calibration_samples=args.calibration_samples,
                      seed=args.seed, measure=measure, spreads=measure.spreads,
                      info={"repeats": repeats, "warmup": warmup, "measured": "steady",
                            "estimator": store.steady.to_json()})
    if args.plot:
        result["plot"] = str(plot_scatter(result, args.plot))
    u = result["uncalibrated"]
    lines = [f"{result['n']} held-out {sp.name} archs at {result['resolution']}px, measured end to end with "
             f"{result['backend']} ({result['threads']} thread(s))",
             estimator_line(store, result["median_spread_pct"]),
             f"{'':14} {'±5%':>7} {'±10%':>7} {'RMSE %':>8} {'MAPE %':>8} {'bias %':>8}",
             f"{'LUT sum':14} {u['within_5pct']:7.0%} {u['within_10pct']:7.0%} {u['rmse_pct']:8.2f} "
             f"{u['mape']:8.2f} {u['bias_pct']:8.2f}"]
    if result["calibrated"]:
        lines.append(f"{'calibrated':14} {result['within_5pct']:7.0%} {result['within_10pct']:7.0%} "
                     f"{result['rmse_pct']:8.2f} {result['mape']:8.2f} {result['bias_pct']:8.2f}")
        src = (f"fitted on {args.calibration_samples} other archs" if args.calibration_samples
               else "the table's saved calibration")
        lines.append(f"calibration: {src}")
    if result["archs_with_estimates"]:
        lines.append(f"{result['archs_with_estimates']} arch(s) needed blocks estimated by the regressor")
    for label, key in (("with dead edges", "dead_edge_archs"), ("all edges live", "live_archs")):
        g = result.get(key)
        if g is not None:
            lines.append(f"{label:14} {g['within_5pct']:7.0%} {g['within_10pct']:7.0%} {g['rmse_pct']:8.2f}   "
                         f"(n = {g['n']}, {'calibrated' if result['calibrated'] else 'LUT sum'})")
    if args.plot:
        lines.append(f"scatter plot: {args.plot}")
    return Report(result, "\n".join(lines))


def run_measured(args: argparse.Namespace) -> Report:
    """``--measured``: scores the table (with its saved calibration) on existing timings."""
    if args.samples is not None:
        raise InputError("--samples measures new archs; with --measured the file's timings are scored: give one.")
    if args.plot:
        check_writable_output(args.plot, flag="--plot")
    model = LatencyModel.load(args.table)
    sp = load_space(args.space)
    result = score_measured(model, sp, read(args.measured, sp))
    if args.plot:
        result["plot"] = str(plot_scatter(result, args.plot))
    u = result["uncalibrated"]
    how = "calibrated" if result["calibrated"] else "LUT sum"
    lines = [f"{result['n']} {sp.name} archs at {result['resolution']}px from {args.measured} (measured there; "
             f"predicted by {args.table}, {result['table_source']})",
             f"{'':14} {'±5%':>7} {'±10%':>7} {'RMSE %':>8} {'MAPE %':>8} {'bias %':>8} {'Spearman':>9}",
             f"{'LUT sum':14} {u['within_5pct']:7.0%} {u['within_10pct']:7.0%} {u['rmse_pct']:8.2f} "
             f"{u['mape']:8.2f} {u['bias_pct']:8.2f} {u['spearman']:9.3f}"]
    if result["calibrated"]:
        lines.append(f"{'calibrated':14} {result['within_5pct']:7.0%} {result['within_10pct']:7.0%} "
                     f"{result['rmse_pct']:8.2f} {result['mape']:8.2f} {result['bias_pct']:8.2f} "
                     f"{result['spearman']:9.3f}")
    lines.append(f"rank agreement ({how}): Spearman {result['spearman']:.3f}, Kendall {result['kendall']:.3f}")
    if args.plot:
        lines.append(f"scatter plot: {args.plot}")
    return Report(result, "\n".join(lines))
