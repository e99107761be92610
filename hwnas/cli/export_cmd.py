"""``hwnas export``: verified ONNX (and .ort, int8) with measured latency and a model card."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli.common import add_arch_args, arch_from_args
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.export import ATOL, ORT_PLATFORMS, ExportOptions, export_model
from hwnas.profile.device_config import add_device_args, commands_from_args
from hwnas.safeio import check_output_dir
from hwnas.space import SearchSpace, load_named_space, load_space

_DEFAULTS = ExportOptions(name="x")


@command("export", help="export an architecture to verified ONNX (+ .ort, int8) with measured latency and a model card")
def setup(p: argparse.ArgumentParser) -> None:
    add_arch_args(p, required=False)
    p.add_argument("--weights", help="hwnas train checkpoint (or a state_dict file); without it the weights are "
                   "random and batch norms randomized (latency only). Supplies the arch when --arch is omitted")
    p.add_argument("--out", required=True, help="output folder, e.g. export/NAME (must be new or empty, see --force)")
    p.add_argument("--name", help="file stem of the exported files (default: the output folder's name)")
    p.add_argument("--ort", action="store_true", help="also write the ONNX Runtime mobile format (.ort), verified")
    p.add_argument("--ort-platform", choices=list(ORT_PLATFORMS), default="portable",
                   help="target of the .ort optimizations: portable (default; no x86 NCHWc layout, so slower than "
                   "the .onnx on x86), arm, or amd64 (x86 only)")
    p.add_argument("--int8", choices=["dynamic", "static"], help="also write an int8 model (static needs --data)")
    p.add_argument("--data", help="dataset spec: static int8 calibration and (with --weights) held-out accuracy")
    p.add_argument("--data-limit", type=int, help="keep at most this many examples per split of --data")
    p.add_argument("--calibration-size", type=int, default=_DEFAULTS.calibration_size,
                   help=f"training images for static int8 calibration (default {_DEFAULTS.calibration_size})")
    p.add_argument("--table", help="latency table: predicts latency, and the measurement uses its backend settings "
                   "(default: ort-cpu, 1 thread, no prediction); a table measured on a remote device is measured "
                   "on again only with --device-config, otherwise the latency is predicted only")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (default: fixed batch 1)")
    p.add_argument("--atol", type=float, default=ATOL, help=f"fp32 parity tolerance, max abs diff (default {ATOL:g})")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per latency measurement in all, split into "
                   "rounds of the steady estimator (default: --rounds x --runs-per-round)")
    p.add_argument("--warmup", type=int, default=_DEFAULTS.warmup, help="untimed runs before measuring")
    p.add_argument("--rounds", type=int, help="rounds of the steady estimator (default 30, or from --repeats)")
    p.add_argument("--runs-per-round", type=int, help="back-to-back timed runs per round (default 5, or from "
                   "--repeats)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="random weights, BN statistics and test inputs")
    p.add_argument("--force", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_device_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _arch(args: argparse.Namespace) -> tuple[SearchSpace, dict]:
    if args.arch or args.preset:
        return arch_from_args(args)
    if not args.weights:
        raise InputError("--arch (or --space with --preset) is required unless --weights is a hwnas train checkpoint.")
    from hwnas.train import read_weights

    _, trained, _ = read_weights(args.weights)
    if trained is None:
        raise InputError(f"--weights file {args.weights} is a plain state_dict without its architecture; pass --arch.")
    sp = (load_space(args.space) if args.space
          else load_named_space(trained.get("space"), field=f"--weights file {args.weights}: arch.space"))
    overrides = {"resolution": args.resolution, "width_mult": args.width_mult, "num_classes": args.num_classes}
    arch = {**trained, **{k: v for k, v in overrides.items() if v is not None}}
    return sp, sp.validate_arch(arch, where=f"--weights file {args.weights}: arch")


def run(args: argparse.Namespace) -> Report:
    check_output_dir(args.out)
    commands = commands_from_args(args)
    sp, arch = _arch(args)
    out = Path(args.out)
    name = args.name or out.resolve().name
    options = ExportOptions(name=name, dynamic_batch=args.dynamic_batch, ort=args.ort, ort_platform=args.ort_platform,
                            int8=args.int8, atol=args.atol, force=args.force, calibration_size=args.calibration_size,
                            data_limit=args.data_limit, repeats=args.repeats, warmup=args.warmup, seed=args.seed,
                            rounds=args.rounds, runs_per_round=args.runs_per_round)
    card = export_model(sp, arch, out_dir=out, options=options, weights=args.weights, data=args.data,
                        table=args.table, commands=commands, progress=not args.no_progress)
    fp32 = card["latency"]["rows"][0]
    data = {
        "onnx": str(out / f"{name}.onnx"),
        "max_abs_diff": card["verification"][0]["max_abs_diff"],
        "measured_latency_ms": fp32["measured_ms"],
        "measured_spread_pct": fp32["spread_pct"],
        "predicted_latency_ms": fp32["predicted_ms"],
        "latency_source": fp32["latency_source"],
        "estimator": card["latency"]["estimator"],
        "relative_error": fp32["relative_error"],
        "out": str(out),
        "card": str(out / "card.json"),
        "ort": None,
        "int8": None,
        "accuracy": card["accuracy"],
        "params": card["params"],
        "flops": card["flops"],
        "latency": card["latency"],
        "files": card["files"],
    }
    if args.ort:
        row = next(r for r in card["latency"]["rows"] if "ORT" in r["model"])
        data["ort"] = {"path": str(out / f"{name}.ort"), "max_abs_diff": card["verification"][1]["max_abs_diff"],
                       "measured_latency_ms": row["measured_ms"]}
    if card["int8"]:
        data["int8"] = {**card["int8"], "path": str(out / card["int8"]["file"])}
    lines = [f"exported {sp.name} (resolution {arch['resolution']}, width x{arch['width_mult']}) to {out}/"]
    for v in card["verification"]:
        lines.append(f"  {v['file']}: max |ORT - PyTorch| {v['max_abs_diff']:.2e} (tolerance {v['atol']:g})")
    for r in card["latency"]["rows"]:
        pred = "" if r["predicted_ms"] is None else f", predicted {r['predicted_ms']:.3f} ms"
        pred += "" if r["relative_error"] is None else f" ({100 * r['relative_error']:+.1f} %)"
        measured = ("not measured" if r["measured_ms"] is None else f"measured {r['measured_ms']:.3f} ms (steady, "
                    f"spread {r['spread_pct']:.1f} %{', unstable' if r.get('unstable') else ''})")
        lines.append(f"  {r['model']}: {measured}{pred}")
    est = card["latency"]["estimator"]
    if est:
        lines.append(f"  measured = {est['name']} ({est['rounds']} rounds x {est['runs_per_round']} runs); "
                     f"predicted = the latency table's {card['latency']['prediction']}")
    lines += [f"  note: {n}" for n in card["latency"]["notes"]
              if n.startswith(("Latency is predicted only", "The machine was unstable"))]
    acc = card["accuracy"] or {}
    if "onnx" in acc:
        lines.append(f"  held-out top-1: PyTorch {100 * acc['pytorch']:.2f} %, ONNX {100 * acc['onnx']:.2f} %"
                     + (f", int8 {100 * acc['int8']:.2f} %" if "int8" in acc else ""))
    lines.append(f"  model card: {out / 'card.md'}")
    return Report(data, "\n".join(lines))
