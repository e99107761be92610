"""``hwnas latency measure``: time whole architectures end to end into a measurements file (resumable)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.jsonio import read_json
from hwnas.latency import BatchPredictor, LatencyModel
from hwnas.latency.fit_sample import informative_archs
from hwnas.latency.measured import parse_arch
from hwnas.latency.validate import spread_stats
from hwnas.profile import BackendConfig, make_backend, whole_model_settings
from hwnas.profile.device_config import add_device_args, add_fleet_args, device_commands_from_args
from hwnas.profile.fleet import Fleet, fleet_summary, time_archs_on_fleet
from hwnas.profile.measured_file import MeasuredFile
from hwnas.profile.whole_model import DEFAULT_CHUNK, time_archs
from hwnas.safeio import check_writable_output
from hwnas.space import ArchSettings, CostCounter, arch_id, load_space


@command("latency measure", help="time N informative archs (or given ones) end to end into a measurements file")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, help="search space name or file")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--archs", type=int, help="pick this many archs stratified over the predicted latency "
                       "range and covering every op option")
    which.add_argument("--archs-file", help="JSON list of archs to time (arch objects or NAS-Bench-201 strings)")
    p.add_argument("--out", required=True, help="measurements file to write (.jsonl; resumed when it exists)")
    p.add_argument("--table", help="latency table whose predictions stratify the pick (default: FLOPs)")
    p.add_argument("--backend", default="ort-cpu", help="ort-cpu (default), torch-cpu, cuda or remote")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float16 (cuda)")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (torch-cpu, cuda)")
    p.add_argument("--device-name", default="", help="device.name recorded in the file (default <host>-<backend>)")
    p.add_argument("--resolution", type=int, help="input resolution, pixels (default: the table's, else the space's)")
    p.add_argument("--width-mult", type=float, help="width multiplier (default 1.0)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the space's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pick and of the round orders (default 0)")
    p.add_argument("--rounds", type=int, help="interleaved rounds of the steady estimator (default 18)")
    p.add_argument("--runs-per-round", type=int, help="back-to-back runs of each arch per round (default 5)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs of each arch first (default 5)")
    p.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                   help=f"archs exported first and then timed side by side in the same rounds (default {DEFAULT_CHUNK})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_device_args(p)
    add_fleet_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace, sp, model: LatencyModel | None) -> ArchSettings:
    base = ArchSettings.of(model.table, sp) if model is not None else ArchSettings(
        resolution=sp.spec.resolution, width_mult=1.0, num_classes=sp.spec.num_classes)
    return ArchSettings(resolution=args.resolution or base.resolution,
                        width_mult=args.width_mult if args.width_mult is not None else base.width_mult,
                        num_classes=args.num_classes or base.num_classes)


def _given_archs(path: str, sp, settings: ArchSettings) -> list[dict[str, Any]]:
    raw = read_json(path, what="--archs-file")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"--archs-file {path} must hold a non-empty JSON list of archs.")
    out = []
    for i, a in enumerate(raw):
        if isinstance(a, dict):
            a = {"resolution": settings.resolution, "width_mult": settings.width_mult,
                 "num_classes": settings.num_classes, **a}
        out.append(parse_arch(sp, a, line=asdict(settings) if isinstance(a, str) else {},
                              where=f"--archs-file {path} item {i}"))
    return out


def run(args: argparse.Namespace) -> Report:
    check_writable_output(args.out)
    if isinstance(args.chunk, bool) or args.chunk < 1:
        raise InputError(f"--chunk must be a positive integer, got {args.chunk}.")
    sp = load_space(args.space)
    model = LatencyModel.load(args.table) if args.table else None
    settings = _settings(args, sp, model)
    devices = device_commands_from_args(args, announce=args.backend == "remote")
    config = BackendConfig(backend=args.backend, threads=args.threads, batch=args.batch, dtype=args.dtype,
                           channels_last=args.channels_last, device_name=args.device_name)
    if args.fleet_anchors < 0:
        raise InputError(f"--fleet-anchors must be >= 0, got {args.fleet_anchors}.")
    fleet = Fleet.of(config, devices, anchors=args.fleet_anchors) if len(devices) > 1 else None
    config = config.with_commands(devices[0] if devices else None)
    steady = whole_model_settings(repeats=30, warmup=args.warmup, rounds=args.rounds,
                                  runs_per_round=args.runs_per_round)
    backends = [make_backend(c) for c in (fleet.configs if fleet is not None else (config,))]
    device = {**backends[0].header(), **(fleet.header() if fleet is not None else {})}
    if fleet is not None:
        fleet.check_same_kind(backends)
    store = MeasuredFile(args.out, space=sp, device=device, steady=steady)
    uncovered: list[str] = []
    if args.archs_file:
        archs, cost_name = _given_archs(args.archs_file, sp, settings), None
    else:
        if model is not None:
            pred = BatchPredictor.build(model, sp, resolution=settings.resolution, width_mult=settings.width_mult,
                                        num_classes=settings.num_classes)
            cost, cost_name = (lambda xs: pred.latency(np.stack([sp.encode(a) for a in xs]))), "latency_ms"
        else:
            counter = CostCounter()
            cost, cost_name = (lambda xs: np.array([counter.blocks(sp.resolve(a)).flops for a in xs])), "flops"
        pick = informative_archs(sp, n=args.archs, seed=args.seed, settings=settings, cost=cost, cost_name=cost_name)
        archs, uncovered = pick.archs, pick.uncovered
    before = len(store)
    if fleet is None:
        ms = time_archs(sp, archs, config=config, store=store, chunk=args.chunk, seed=args.seed,
                        desc="measuring archs", progress=not args.no_progress)
    else:
        ms = time_archs_on_fleet(fleet, sp, archs, store=store, chunk=args.chunk, seed=args.seed,
                                 desc="measuring archs", progress=not args.no_progress)
    keys = [arch_id(sp, a) for a in archs]
    spreads = [store.get(k).get("spread_pct") for k in keys]
    data = {"out": args.out, "space": sp.name, "n": len(archs), "measured_now": len(store) - before,
            "lines": len(store), "stratified_by": cost_name, "uncovered": uncovered, "measured": "steady",
            "estimator": steady.to_json(), "device": device, **asdict(settings),
            "min_ms": float(min(ms)), "max_ms": float(max(ms)), **spread_stats(spreads),
            "fleet": None if fleet is None else fleet_summary({k: store.get(k) for k in keys}, fleet.serials)}
    spread = "" if data["median_spread_pct"] is None else f", median spread {data['median_spread_pct']:.1f}%"
    lines = [f"{args.out}: {len(archs)} {sp.name} archs at {settings.resolution}px measured end to end on "
             f"{device['name']} ({config.backend}, {config.threads} thread(s)): {data['measured_now']} now, "
             f"{len(archs) - data['measured_now']} kept from before",
             f"measured = {steady.name} ({steady.rounds} interleaved rounds x {steady.runs_per_round} runs); "
             f"{data['min_ms']:.3f}-{data['max_ms']:.3f} ms{spread}"]
    if cost_name:
        lines.append(f"picked stratified over predicted {cost_name}"
                     + (f"; {len(uncovered)} option(s) not covered: {', '.join(uncovered[:4])}" if uncovered
                        else ", covering every op option"))
    return Report(data, "\n".join(lines))
