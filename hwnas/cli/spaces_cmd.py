"""``hwnas spaces``: lists the shipped search spaces."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.space import load_space, space_names


@command("spaces", help="list the shipped search spaces")
def setup(p: argparse.ArgumentParser) -> None:
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    rows = [load_space(n).describe() for n in space_names()]
    keys = ("name", "kind", "decisions", "size_log10", "size", "presets", "resolution", "description")
    data = {"spaces": [{k: r[k] for k in keys} for r in rows]}
    lines = [f"{'space':18} {'kind':5} {'decisions':>9} {'size':>9} {'log10(size)':>11}  presets"]
    for r in rows:
        size = f"{r['size']:,}" if r["size"] is not None and r["size"] < 10**7 else "-"
        lines.append(f"{r['name']:18} {r['kind']:5} {r['decisions']:>9} {size:>9} {r['size_log10']:>11.2f}  "
                     f"{', '.join(r['presets']) or '-'}")
    return Report(data, "\n".join(lines))
