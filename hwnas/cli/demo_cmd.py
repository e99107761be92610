"""``hwnas demo``: the main job end to end on the embedded default (see ``hwnas.cli.demo``)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from hwnas.cli.demo import DemoConfig, render, run_demo
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.safeio import check_output_dir


@command("demo", help="profile or load a table, search under a latency budget, retrain, export ONNX, summarize")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="CI-sized run (tiny data and budgets; numbers not meaningful)")
    p.add_argument("--run", default="runs/demo", help="run directory (replaced on every demo)")
    p.add_argument("--export", default="export/demo", help="export folder (replaced on every demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    check_output_dir(args.run, flag="--run")
    check_output_dir(args.export, flag="--export")
    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    cfg = replace(cfg, seed=args.seed)
    report = run_demo(cfg, run_dir=args.run, export_dir=args.export)
    return Report(report, "hwnas demo\n" + render(report))
