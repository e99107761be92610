"""``hwnas arch import``: a published network (OFA subnet encoding, ProxylessNAS config) as an hwnas arch."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.jsonio import read_json, write_json_atomic
from hwnas.safeio import check_writable_output, read_bounded_bytes, short
from hwnas.space import IMPORTERS, OFA_DEFAULT_SPACE, CostCounter, load_space


@command("arch import", help="convert a published net (OFA {ks,e,d} encoding, ProxylessNAS net config, "
                              "NAS-Bench-201 cell string) into an arch")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=sorted([*IMPORTERS, "nb201"]),
                   help="ofa: {\"ks\": [20], \"e\": [20], \"d\": [5]} subnet encoding; proxyless: ProxylessNAS net "
                        "config; nb201: a NAS-Bench-201 cell string |op~0|+|op~0|op~1|+|...|, or a file holding one")
    p.add_argument("input", metavar="IN", help="the JSON file to convert (nb201: the string itself or a text file)")
    p.add_argument("--space", help=f"target space (ofa default: {OFA_DEFAULT_SPACE} = w1.2, or ofa-mbv3-w10; "
                                   "proxyless default: the shipped space with the config's widths; nb201 default: "
                                   "nasbench201)")
    p.add_argument("--resolution", type=int, help="input resolution of the arch (default: the encoding's 'r', else the space's)")
    p.add_argument("--out", required=True, help="architecture JSON file to write")
    add_json_flag(p)
    p.set_defaults(func=run)


def _nb201(args: argparse.Namespace):
    text = args.input
    if not text.strip().startswith("|"):
        if not Path(text).is_file():
            raise InputError(f"IN: {short(text)} is neither a NAS-Bench-201 string (|op~0|+|...|) nor a file.")
        text = read_bounded_bytes(text, what="nb201 file", limit=4096).decode("utf-8", errors="replace").strip()
    sp = load_space(args.space or "nasbench201")
    if getattr(sp.spec, "topology", None) != "nb201":
        raise InputError(f"--space: {sp.name} is not a NAS-Bench-201 cell space.")
    return sp, sp.from_string(text, resolution=args.resolution)


def run(args: argparse.Namespace) -> Report:
    check_writable_output(args.out)
    if args.format == "nb201":
        if args.out == args.input:
            raise InputError("--out must differ from the input file.")
        sp, arch = _nb201(args)
    else:
        raw = read_json(args.input, what=f"{args.format} file")
        where = f"{args.format} file {args.input}"
        if args.format == "ofa":
            sp, arch = IMPORTERS["ofa"](raw, space=args.space or OFA_DEFAULT_SPACE, resolution=args.resolution,
                                        where=where)
        else:
            sp, arch = IMPORTERS["proxyless"](raw, space=args.space, resolution=args.resolution, where=where)
        if args.out == args.input:
            raise InputError("--out must differ from the input file.")
    cost = CostCounter().blocks(sp.resolve(arch))
    write_json_atomic(args.out, arch)
    data = {"arch": arch, "space": sp.name, "out": args.out, "params": cost.params, "flops": cost.flops}
    what = f"arch of space {sp.name} at {arch['resolution']} px"
    if args.format == "nb201":
        data["nb201"] = sp.to_string(arch)
        what = f"{data['nb201']} in space {sp.name}"
    return Report(data, f"{args.out}: {what}, {cost.params / 1e6:.3f}M params, {cost.flops / 1e6:.1f}M FLOPs")
