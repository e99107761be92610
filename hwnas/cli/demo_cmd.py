"""``hwnas demo``: the main job on the embedded default, as far as it exists.

Until search lands it describes what is real today: every shipped space, its presets' parameters
and FLOPs counted with fvcore, checked against torchvision where a reference exists.
"""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.cost import CostCounter
from hwnas.space import load_space, space_names


@command("demo", help="run the main job end to end on the embedded default")
def setup(p: argparse.ArgumentParser) -> None:
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    counter = CostCounter()
    rows = []
    for name in space_names():
        sp = load_space(name)
        for preset in sp.presets:
            arch = sp.preset(preset)
            cost = counter.blocks(sp.resolve(arch))
            rows.append({"space": name, "preset": preset, "resolution": arch["resolution"],
                         "params": cost.params, "flops": cost.flops, "size_log10": round(sp.size_log10(), 2)})
    lines = ["hwnas demo: shipped search spaces and their presets (params and FLOPs counted with fvcore)", "",
             f"{'space':18} {'preset':22} {'params':>10} {'MFLOPs':>9} {'log10(space)':>12}"]
    for r in rows:
        lines.append(f"{r['space']:18} {r['preset']:22} {r['params']:>10,d} {r['flops'] / 1e6:9.1f} {r['size_log10']:>12.2f}")
    lines += ["", "Search, profiling and export are not built yet: see README.md for what each command does."]
    return Report({"presets": rows}, "\n".join(lines))
