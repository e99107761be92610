"""``hwnas arch show``: describe one architecture (blocks, FLOPs, params, table latency)."""

from __future__ import annotations

import argparse
from typing import Any

from hwnas.cli.common import add_arch_args, arch_from_args, table_defaults
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.jsonio import write_json_atomic
from hwnas.latency import LatencyModel, LatencyTable
from hwnas.safeio import check_writable_output
from hwnas.space import CostCounter, op_key


@command("arch show", help="blocks, FLOPs, params and (with --table) latency of one architecture")
def setup(show: argparse.ArgumentParser) -> None:
    add_arch_args(show)
    show.add_argument("--table", help="latency table to price the blocks with (its resolution, width and class "
                                      "count are the defaults)")
    show.add_argument("--out", help="write the (preset) architecture to this JSON file")
    add_json_flag(show)
    show.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> Report:
    if args.out:
        check_writable_output(args.out)
    table = LatencyTable.load(args.table) if args.table else None
    # like ``hwnas search``: resolution, width and classes default to the table's
    sp, arch = arch_from_args(args, defaults=table_defaults(table.device) if table is not None else None)
    blocks = sp.resolve(arch)
    counter = CostCounter()
    per_lat: list[float | None] = [None] * len(blocks)
    latency = lut_sum = None
    calibrated = False
    if table is not None:
        table.check_resolution(arch["resolution"])
        lut_sum, per_lat = table.lookup_sum(blocks)
        # the same number as `hwnas latency predict` and `hwnas search` (calibrated when the table has one)
        pred = LatencyModel.load(args.table).predict(arch, space=sp)
        latency, calibrated = pred.latency_ms, pred.calibrated
    rows: list[dict[str, Any]] = []
    for b, lat in zip(blocks, per_lat):
        c = counter.block(b)
        rows.append({"slot": b.slot, "op": b.op, "key": op_key(b), "flops": c.flops, "params": c.params,
                     "latency_ms": lat})
    total = counter.blocks(blocks)
    if args.out:
        if not args.preset and not any(v is not None for v in (args.resolution, args.width_mult, args.num_classes)):
            raise InputError("--out writes a preset (or an overridden arch) to a file; the arch file already exists.")
        write_json_atomic(args.out, arch)
    native = sp.to_string(arch) if sp.kind == "cell" else None  # the NAS-Bench-201 string
    data = {"space": sp.name, "arch": arch, "params": total.params, "flops": total.flops, "latency_ms": latency,
            "lut_sum_ms": lut_sum, "calibrated": calibrated, "blocks": rows}
    if native is not None:
        data["nb201"] = native
    if args.out:
        data["out"] = args.out
    lines = [f"{'slot':10} {'op':10} {'MFLOPs':>9} {'params':>9} {'ms':>8}  key"]
    for r in rows:
        ms = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "-"
        lines.append(f"{r['slot']:10} {r['op']:10} {r['flops'] / 1e6:9.2f} {r['params']:9d} {ms:>8}  {r['key'] or '-'}")
    lat_txt = "n/a (no --table)" if latency is None else (
        f"{latency:.3f} ms predicted ({'calibrated; ' if calibrated else ''}table sum {lut_sum:.3f} ms)")
    if native is not None:
        lines.append(f"NAS-Bench-201 cell: {native}")
    lines.append(f"space {sp.name}, resolution {arch['resolution']}, width x{arch['width_mult']}: "
                 f"{total.params / 1e6:.3f}M params, {total.flops / 1e6:.1f}M FLOPs, latency {lat_txt}")
    return Report(data, "\n".join(lines))
