"""``hwnas latency predict``: an architecture's latency from a table (+ calibration, + estimates)."""

from __future__ import annotations

import argparse

from hwnas.cli.common import add_arch_args, arch_from_args
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.latency import LatencyModel


@command("latency predict", help="predict an architecture's latency from a latency table")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="latency table JSON (its .calibration.json is used when present)")
    add_arch_args(p)
    p.add_argument("--strict", action="store_true",
                   help="refuse to estimate blocks the table lacks (exit 2 naming their keys)")
    p.add_argument("--no-calibration", action="store_true", help="report the plain sum of block latencies")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    sp, arch = arch_from_args(args)
    model = LatencyModel.load(args.table, calibration=not args.no_calibration)
    pred = model.predict(arch, strict=args.strict, space=sp)
    data = {**pred.to_json(), "table": args.table, "space": sp.name, "resolution": arch["resolution"],
            "regressor": model.regressor_method if pred.estimated else None}
    lines = [f"{'slot':10} {'ms':>9}  {'source':9}  key"]
    for r in pred.per_block:
        lines.append(f"{r['slot']:10} {r['ms']:9.3f}  {r['source']:9}  {r['key'] or '-'}")
    est = f" ({len(pred.estimated)} estimated by the {model.regressor_method} regressor)" if pred.estimated else ""
    lines.append(f"sum of blocks {pred.lut_sum_ms:.3f} ms over {pred.num_blocks} blocks{est}")
    cal = "calibrated" if pred.calibrated else "uncalibrated (no calibration file)"
    lines.append(f"predicted latency: {pred.latency_ms:.3f} ms, {cal}")
    return Report(data, "\n".join(lines))
