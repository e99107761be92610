"""``hwnas search``: architecture search under a latency budget with FLOPs/params limits."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.errors import InputError
from hwnas.profile.device_config import add_device_args
from hwnas.safeio import check_output_dir
from hwnas.search import SearchSettings, load_strategies, run_search
from hwnas.supernet import SHARING, SupernetTrainConfig


def _budgets(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pareto takes comma-separated latencies in ms, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("--pareto latencies must be positive")
    return values


@command("search", help="search an architecture under a latency budget (and FLOPs/params limits)")
def setup(p: argparse.ArgumentParser) -> None:
    strategies = load_strategies()
    p.add_argument("--space", required=True, help="search space name or file")
    p.add_argument("--strategy", required=True, choices=sorted(strategies), help="search strategy")
    p.add_argument("--table", required=True, help="latency table of the target device")
    p.add_argument("--latency-ms", type=float, required=True, help="latency budget T, ms (predicted)")
    p.add_argument("--flops-max", type=float, help="FLOPs (multiply-adds) upper bound")
    p.add_argument("--params-max", type=float, help="parameter-count upper bound")
    p.add_argument("--data", default="digits", help="digits | fashion-mnist[:DIR] | cifar10:DIR | imagefolder:DIR")
    p.add_argument("--data-limit", type=int, help="keep at most this many examples per split")
    p.add_argument("--epochs", type=int, default=5,
                   help="supernet (weight) training epochs, >= 1 (0 only with mnasnet --accuracy proxy)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size")
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate of the weights")
    p.add_argument("--weight-decay", type=float, default=4e-5, help="weight decay of the weights")
    p.add_argument("--resolution", type=int, help="input resolution (default: the table's)")
    p.add_argument("--width-mult", type=float, help="width multiplier (default: the table's)")
    p.add_argument("--bn-batches", type=int, default=4, help="training batches to recalibrate BN before scoring")
    p.add_argument("--weight-sharing", choices=SHARING, default="separate",
                   help="supernet candidates: separate weights (the papers) or entangled (one module per layer, "
                        "smaller kernels/expansions as slices; trains far faster in short CPU runs)")
    p.add_argument("--pareto", type=_budgets, default=(), metavar="L1,L2,...",
                   help="more latency budgets: one supernet, one winner per budget")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    for cls in strategies.values():
        cls.add_arguments(p)
    add_device_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    check_output_dir(args.out)
    strategies = load_strategies()
    if args.epochs < 0:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}.")
    remote_flags = [f for f, v in (("--device-config", args.device_config), ("--run-cmd", args.run_cmd),
                                   ("--push-cmd", args.push_cmd), ("--info-cmd", args.info_cmd),
                                   ("--parser", args.parser)) if v]
    strategy = strategies[args.strategy].from_args(args)
    if args.epochs == 0 and not strategy.runs_without_weight_training():
        raise InputError(f"--epochs must be >= 1 for {args.strategy} (it trains the supernet's weights); only "
                         f"mnasnet with --accuracy proxy runs without weight training (--epochs 0).")
    if remote_flags and not strategy.measures_on_device():
        raise InputError(f"{remote_flags[0]} is used only when the search measures on the device "
                         f"(--strategy mnasnet --latency measured).")
    if args.pareto and not hasattr(strategy, "evolution"):
        raise InputError(f"--pareto is supported by spos-evolution and random, not {args.strategy}.")
    settings = SearchSettings(
        space=args.space, strategy=args.strategy, table=args.table, latency_ms=args.latency_ms, data=args.data,
        epochs=args.epochs, flops_max=args.flops_max, params_max=args.params_max, resolution=args.resolution,
        width_mult=args.width_mult, seed=args.seed, data_limit=args.data_limit, pareto=args.pareto,
        bn_batches=args.bn_batches, weight_sharing=args.weight_sharing,
        train=SupernetTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  weight_decay=args.weight_decay),
        strategy_settings=strategy.settings(),
    )
    s = run_search(settings, strategy, out=args.out, resume=args.resume)
    lines = [
        f"strategy {s['strategy']} on {s['space']}: {s['evaluated']} candidates evaluated",
        f"best: accuracy {100 * s['accuracy']:.2f}% (supernet, arch split), predicted latency "
        f"{s['predicted_latency_ms']:.3f} ms (budget {s['latency_budget_ms']:g}), {s['flops'] / 1e6:.2f}M FLOPs, "
        f"{s['params'] / 1e6:.3f}M params, constraints {'met' if s['constraints_met'] else 'NOT met'}",
    ]
    for w in s["pareto"]:
        lines.append(f"  budget {w['latency_budget_ms']:g} ms: accuracy {100 * w['accuracy']:.2f}%, "
                     f"predicted {w['predicted_latency_ms']:.3f} ms")
    lines.append(f"run: {args.out} (summary.json, best_arch.json, pareto.png)")
    return Report(s, "\n".join(lines))
