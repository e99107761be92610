"""``hwnas latency import``: convert a published latency table (ProxylessNAS, Once-for-All)."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.latency import IMPORTERS, import_table
from hwnas.safeio import check_writable_output


@command("latency import", help="convert a published latency table (ProxylessNAS or Once-for-All YAML)")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=sorted(IMPORTERS),
                   help="proxyless: mobile_trim.yaml (expand ratio, var); ofa: <R>_lookup_table.yaml (mid channels, std)")
    p.add_argument("input", metavar="IN", help="the published YAML table")
    p.add_argument("--out", required=True, help="hwnas latency table to write")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    check_writable_output(args.out)
    table = import_table(args.format, args.input)
    if args.out == args.input:
        raise InputError("--out must differ from the input file.")
    table.save(args.out)
    dev = table.device
    data = {"entries": len(table), "out": args.out, "resolution": dev.get("resolution"),
            "spaces": dev.get("spaces"), "device": dev}
    text = (f"{args.out}: {len(table)} entries from {args.input} ({args.format}), resolution {dev.get('resolution')}, "
            f"for space {', '.join(dev.get('spaces', []))}; values are the published means (device.stat = 'mean')")
    return Report(data, text)
