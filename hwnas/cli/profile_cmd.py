"""``hwnas profile``: measure every distinct block of a space on a device into a latency table."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.profile import BackendConfig, ProfileSettings, profile_table
from hwnas.profile.device_config import add_device_args, add_fleet_args, device_commands_from_args
from hwnas.profile.fleet import Fleet
from hwnas.safeio import check_output_dir, check_writable_output
from hwnas.space import load_space


@command("profile", help="build a latency lookup table: time every distinct block of a space on a backend")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", action="append", required=True,
                   help="search space name or file (repeat to cover several spaces in one table)")
    p.add_argument("--backend", default="ort-cpu", help="ort-cpu (default), torch-cpu, cuda or remote")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float16 (cuda)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (torch-cpu, cuda)")
    p.add_argument("--resolution", type=int, help="input resolution, pixels (default: the space's)")
    p.add_argument("--width-mult", type=float, default=1.0, help="width multiplier of the archs served (default 1.0)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the space's)")
    p.add_argument("--out", required=True, help="latency table file to write")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into --out")
    p.add_argument("--device-name", default="", help="device.name of the table (default <host>-<backend>)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per block (default 30, or --rounds x --runs-per-round)")
    p.add_argument("--rounds", type=int, help="rounds of the steady figure per block; sets --repeats to "
                   "rounds x runs-per-round (default: --repeats / runs-per-round)")
    p.add_argument("--runs-per-round", type=int, help="interleaved single runs per round whose median is one round "
                   "median (default: the largest divisor of --repeats up to 5)")
    p.add_argument("--quantile", type=float, help="quantile of round medians stored as steady_ms (default: the "
                   "estimator's)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per block first (default 5)")
    p.add_argument("--max-cv", type=float, default=0.05,
                   help="re-measure entries whose std/mean exceeds this (default 0.05)")
    p.add_argument("--remeasure", type=int, default=2, help="re-measurement passes at most (default 2)")
    p.add_argument("--chunk", type=int, default=64, help="blocks prepared and interleaved at a time (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the block order and round shuffles")
    p.add_argument("--min-sample-ms", type=float, default=0.0,
                   help="average back-to-back runs lasting at least this long into one sample, ms "
                        "(default 0: every sample is one run, as inside a network)")
    p.add_argument("--workdir", help="folder for exported blocks (default <out>.work, removed when complete)")
    add_device_args(p)
    add_fleet_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _repeats(args: argparse.Namespace) -> int:
    """``--repeats``, or ``--rounds`` x ``--runs-per-round`` (5 when not given)."""
    if args.rounds is None:
        return 30 if args.repeats is None else args.repeats
    if args.repeats is not None:
        raise InputError("give --repeats or --rounds (with --runs-per-round), not both.")
    for flag, v in (("--rounds", args.rounds), ("--runs-per-round", args.runs_per_round)):
        if v is not None and v < 1:
            raise InputError(f"{flag} must be an integer >= 1, got {v}.")
    return args.rounds * (5 if args.runs_per_round is None else args.runs_per_round)


def run(args: argparse.Namespace) -> Report:
    check_writable_output(args.out)
    if args.workdir:
        check_output_dir(args.workdir, flag="--workdir")
    spaces = [load_space(s) for s in args.space]
    devices = device_commands_from_args(args, announce=args.backend == "remote")
    config = BackendConfig(backend=args.backend, threads=args.threads, batch=args.batch, dtype=args.dtype,
                           channels_last=args.channels_last, device_name=args.device_name)
    if args.fleet_anchors < 0:
        raise InputError(f"--fleet-anchors must be >= 0, got {args.fleet_anchors}.")
    fleet = Fleet.of(config, devices, anchors=args.fleet_anchors) if len(devices) > 1 else None
    config = config.with_commands(devices[0] if devices else None)
    settings = ProfileSettings(repeats=_repeats(args), warmup=args.warmup, max_cv=args.max_cv,
                               remeasure=args.remeasure, chunk=args.chunk, seed=args.seed,
                               min_sample_ms=args.min_sample_ms, runs_per_round=args.runs_per_round,
                               **({} if args.quantile is None else {"quantile": args.quantile}))
    res = profile_table(spaces, config=config, out=args.out, resolution=args.resolution,
                        width_mult=args.width_mult, num_classes=args.num_classes, settings=settings,
                        resume=args.resume, workdir=args.workdir, fleet=fleet)
    data = res.summary()
    dev = data["device"]
    lines = [
        f"{data['out']}: {data['entries']} entries ({data['measured']} measured now, {data['skipped']} kept from "
        f"before) for {', '.join(dev['spaces'])} at {dev['resolution']} px, width x{dev['width_mult']}, "
        f"{dev['num_classes']} classes",
        f"device: {dev['name']} | {dev['backend']} | {dev.get('threads')} thread(s) | batch {dev.get('batch')} | "
        f"{dev.get('dtype')} | {dev.get('processor')}",
        f"time: {data['seconds']:.1f} s (export {data['export_seconds']:.1f} s, timing {data['timing_seconds']:.1f} s)",
    ]
    if data["cv_median"] is not None:
        lines.append(f"spread: median CV {100 * data['cv_median']:.2f}%, p90 {100 * data['cv_p90']:.2f}%, "
                     f"max {100 * data['cv_max']:.2f}%; {data['remeasured']} entries re-measured")
    est = data["estimator"] or {}
    if est:
        spread = "" if data["median_spread_pct"] is None else f", median spread {data['median_spread_pct']:.1f}%"
        lines.append(f"entries: steady_ms = {est['name']} ({est['rounds']} rounds x {est['runs_per_round']} "
                     f"{est['samples']}){spread}")
    widest = sorted(data["cv"].items(), key=lambda kv: -kv[1])[:5]
    if widest:
        lines.append("widest spread: " + "; ".join(f"{k} {100 * v:.1f}%" for k, v in widest))
    if data["load_avg"] is not None and data["cpus"] and data["load_avg"] > 0.5 * data["cpus"]:
        lines.append(f"warning: the machine's load average is {data['load_avg']} on {data['cpus']} cores: other "
                     "processes were running, so the spread is wider than the device's own")
    f = dev.get("fleet") or {}
    if f.get("entries_per_device"):
        lines.append(f"fleet: {', '.join(f'{s} {n} entries' for s, n in f['entries_per_device'].items())}; "
                     f"{f['anchors']} measured on every device, largest disagreement {f['max_disagreement_pct']}%"
                     + (f"; beyond the estimator's spread: {', '.join(f['beyond_spread'][:3])}"
                        if f["beyond_spread"] else ""))
    if data["unstable"]:
        lines.append(f"warning: {len(data['unstable'])} entries still have CV above {args.max_cv}: "
                     f"{', '.join(data['unstable'][:3])}{' ...' if len(data['unstable']) > 3 else ''}")
    return Report(data, "\n".join(lines))
