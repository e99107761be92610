"""``hwnas latency merge``: one table from several measured with the same device settings."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.latency import LatencyTable
from hwnas.safeio import check_writable_output


@command("latency merge", help="merge latency tables of the same device and settings (e.g. two spaces)")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("tables", nargs="+", metavar="TABLE", help="tables to merge (at least two)")
    p.add_argument("--out", required=True, help="merged table to write")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    check_writable_output(args.out)
    if len(args.tables) < 2:
        raise InputError("latency merge needs at least two tables.")
    tables = [LatencyTable.load(t) for t in args.tables]
    merged, overlap = tables[0], 0
    for t in tables[1:]:
        overlap += sum(1 for k in t.entries if k in merged.entries)
        merged = merged.merge(t)  # refuses different devices or settings (InputError)
    merged.entries = dict(sorted(merged.entries.items()))
    merged.save(args.out)
    data = {"entries": len(merged), "out": args.out, "inputs": list(args.tables), "overlapping": overlap,
            "spaces": merged.device.get("spaces", [])}
    text = (f"{args.out}: {len(merged)} entries from {len(tables)} tables ({overlap} keys in more than one; "
            f"the first table's value kept)")
    return Report(data, text)
