"""``hwnas latency calibrate``: fit the table-sum calibration on measured random archs and save it."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.latency import LatencyModel, calibrate, calibration_path
from hwnas.profile import MeasurementStore, default_repeats, table_measure, whole_model_settings
from hwnas.profile.whole_model import DEFAULT_CHUNK
from hwnas.profile.device_config import add_device_args, commands_from_args
from hwnas.safeio import check_writable_output
from hwnas.space import load_space


def add_measure_args(p: argparse.ArgumentParser) -> None:
    """``--seed``, ``--repeats``, ``--warmup``, ``--rounds``, ``--runs-per-round``, ``--chunk``, ``--measurements``
    (shared with ``latency validate``)."""
    p.add_argument("--seed", type=int, default=0, help="seed of the random architectures (default 0)")
    p.add_argument("--repeats", type=int, help="timed runs per architecture and pass, 3 passes (default: the "
                   "table's, else 30); split into rounds of the steady estimator unless --rounds is given")
    p.add_argument("--warmup", type=int, help="warm-up runs per architecture (default: the table's, else 5)")
    p.add_argument("--rounds", type=int, help="interleaved rounds of the steady estimator (default: from --repeats, "
                   "3 x 30 runs -> 18 rounds)")
    p.add_argument("--runs-per-round", type=int, help="back-to-back runs of each arch per round (default 5)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                   help=f"archs exported first and then timed side by side in the same interleaved rounds "
                        f"(default {DEFAULT_CHUNK}); the measurements file is saved after each chunk")
    p.add_argument("--measurements", help="JSON file keeping end-to-end measurements (resumes from it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_device_args(p)


def repeats_from_args(args: argparse.Namespace, table) -> tuple[int, int]:
    from hwnas.errors import InputError

    repeats, warmup = default_repeats(table)
    repeats = args.repeats if args.repeats is not None else repeats
    warmup = args.warmup if args.warmup is not None else warmup
    if repeats < 1 or warmup < 0:
        raise InputError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats} and {warmup}.")
    return repeats, warmup


def store_from_args(args: argparse.Namespace, table) -> MeasurementStore:
    """The measurements store (``--measurements``) with the estimator settings of the flags."""
    repeats, warmup = repeats_from_args(args, table)
    steady = whole_model_settings(repeats=repeats, warmup=warmup, rounds=args.rounds,
                                  runs_per_round=args.runs_per_round)
    return MeasurementStore(args.measurements, device=table.device, repeats=repeats, warmup=warmup, steady=steady)


def estimator_line(store: MeasurementStore, spread: float | None) -> str:
    """Says how the measured numbers were made, e.g. for the text reports."""
    s = store.steady
    tail = "" if spread is None else f"; median spread {spread:.1f}% (q90 - q10 over q50 of round medians)"
    return (f"measured = {s.name} ({s.rounds} interleaved rounds x {s.runs_per_round} runs, after {s.warmup} "
            f"warm-up runs){tail}")


@command("latency calibrate", help="fit and save the calibration of a table's sums against end-to-end runs")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="latency table JSON")
    p.add_argument("--space", required=True, help="search space whose random archs are measured")
    p.add_argument("--samples", type=int, required=True, help="number of random archs to measure (>= 3)")
    add_measure_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    out = calibration_path(args.table)
    check_writable_output(out, flag="the calibration file of --table")
    if args.measurements:
        check_writable_output(args.measurements, flag="--measurements")
    commands = commands_from_args(args)
    model = LatencyModel.load(args.table, calibration=False)
    sp = load_space(args.space)
    repeats, warmup = repeats_from_args(args, model.table)
    store = store_from_args(args, model.table)
    measure = table_measure(sp, table=model.table, store=store, repeats=repeats, warmup=warmup, seed=args.seed,
                            commands=commands, progress=not args.no_progress, chunk=args.chunk)
    cal = calibrate(model, sp, samples=args.samples, seed=args.seed, measure=measure,
                    info={"repeats": repeats, "warmup": warmup, "estimator": store.steady.to_json()},
                    spreads=measure.spreads)
    cal.save(out)
    scale, per_block = cal.per_block()
    spread = {k: cal.fit.get(k) for k in ("median_spread_pct", "max_spread_pct")}
    data = {"out": str(out), "n": cal.fit["n"], "features": list(cal.features), "coef": list(cal.coef),
            "intercept_ms": cal.intercept_ms, "fit_rmse_pct": cal.fit["rmse_pct"], "fit_mape": cal.fit["mape"],
            "space": sp.name, "seed": args.seed, "measured": "steady", "estimator": store.steady.to_json(),
            **spread}
    text = (f"calibration of {args.table} on {cal.fit['n']} measured {sp.name} archs: latency ≈ "
            f"{scale:.4f} · lut_sum {per_block:+.4f} ms · blocks {cal.intercept_ms:+.4f} ms "
            f"(fit RMSE {cal.fit['rmse_pct']:.2f}%), written to {out}\n"
            + estimator_line(store, spread["median_spread_pct"]))
    return Report(data, text)
