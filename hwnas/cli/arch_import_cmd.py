"""``hwnas arch import``: a published network (OFA subnet encoding, ProxylessNAS config) as an hwnas arch."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.jsonio import read_json, write_json_atomic
from hwnas.safeio import check_writable_output
from hwnas.space import IMPORTERS, OFA_DEFAULT_SPACE, CostCounter


@command("arch import", help="convert a published net (OFA {ks,e,d} encoding, ProxylessNAS net config) into an arch")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=sorted(IMPORTERS),
                   help="ofa: {\"ks\": [20], \"e\": [20], \"d\": [5]} subnet encoding; proxyless: ProxylessNAS net config")
    p.add_argument("input", metavar="IN", help="the JSON file to convert")
    p.add_argument("--space", help=f"target space (ofa default: {OFA_DEFAULT_SPACE} = w1.2, or ofa-mbv3-w10; "
                                   "proxyless default: the shipped space with the config's widths)")
    p.add_argument("--resolution", type=int, help="input resolution of the arch (default: the encoding's 'r', else the space's)")
    p.add_argument("--out", required=True, help="architecture JSON file to write")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    check_writable_output(args.out)
    raw = read_json(args.input, what=f"{args.format} file")
    where = f"{args.format} file {args.input}"
    if args.format == "ofa":
        sp, arch = IMPORTERS["ofa"](raw, space=args.space or OFA_DEFAULT_SPACE, resolution=args.resolution, where=where)
    else:
        sp, arch = IMPORTERS["proxyless"](raw, space=args.space, resolution=args.resolution, where=where)
    if args.out == args.input:
        raise InputError("--out must differ from the input file.")
    cost = CostCounter().blocks(sp.resolve(arch))
    write_json_atomic(args.out, arch)
    data = {"arch": arch, "space": sp.name, "out": args.out, "params": cost.params, "flops": cost.flops}
    text = (f"{args.out}: arch of space {sp.name} at {arch['resolution']} px, {cost.params / 1e6:.3f}M params, "
            f"{cost.flops / 1e6:.1f}M FLOPs")
    return Report(data, text)
