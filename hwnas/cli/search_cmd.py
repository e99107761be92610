"""``hwnas search``: architecture search under a latency budget with FLOPs/params limits."""

from __future__ import annotations

import argparse

from hwnas.cli.common import add_distributed_args, distributed_from_args
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.cli.supernet_args import add_supernet_training_args, supernet_training_options
from hwnas.errors import InputError
from hwnas.profile import SteadySettings
from hwnas.profile.device_config import add_device_args, commands_from_args
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
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--latency-ms", type=float, help="latency budget T, ms")
    budget.add_argument("--latency-rel", metavar="REF:FACTOR",
                        help="relative budget: FACTOR (in (0, 2]) times REF's latency, REF a preset of the space "
                             "or an arch file (e.g. mobilenet_v2:0.8); judged side by side with REF when measured")
    p.add_argument("--flops-max", type=float, help="FLOPs (multiply-adds) upper bound")
    p.add_argument("--params-max", type=float, help="parameter-count upper bound")
    p.add_argument("--data", default="digits", help="digits | fashion-mnist[:DIR] | cifar10:DIR | imagefolder:DIR")
    p.add_argument("--data-limit", type=int, help="keep at most this many examples per split")
    p.add_argument("--epochs", type=int, default=5,
                   help="supernet (weight) training epochs, >= 1 (0 only with mnasnet --accuracy proxy)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="training batch size of one process (global batch: N x it under torchrun)")
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate of the weights")
    p.add_argument("--weight-decay", type=float, default=4e-5, help="weight decay of the weights")
    p.add_argument("--resolution", type=int, help="input resolution (default: the table's)")
    p.add_argument("--width-mult", type=float, help="width multiplier (default: the table's)")
    p.add_argument("--bn-batches", type=int, default=4, help="training batches to recalibrate BN before scoring")
    p.add_argument("--weight-sharing", choices=SHARING, default="separate",
                   help="supernet candidates: separate weights (the papers) or entangled (one module per layer, "
                        "smaller kernels/expansions as slices; trains far faster in short CPU runs)")
    add_supernet_training_args(p, default=True)
    p.add_argument("--pareto", type=_budgets, default=(), metavar="L1,L2,...",
                   help="more latency budgets: one supernet, one winner per budget")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    v = p.add_argument_group("measured final selection (the best K candidates timed on the table's device)")
    v.add_argument("--verify", type=int, default=8, metavar="K",
                   help="candidates to time end to end at the end (0: off; the result is then predicted only)")
    v.add_argument("--verify-rounds", type=int, default=SteadySettings.rounds,
                   help="interleaved rounds of the steady estimator")
    v.add_argument("--verify-runs-per-round", type=int, default=SteadySettings.runs_per_round,
                   help="timed runs per candidate and round (their median is the round's sample)")
    v.add_argument("--verify-warmup", type=int, default=SteadySettings.warmup, help="untimed runs per candidate")
    for cls in strategies.values():
        cls.add_arguments(p)
    add_device_args(p)
    add_distributed_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    dist = distributed_from_args(args)
    dist.agree(lambda: check_output_dir(args.out))
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}.")
    strategies = load_strategies()
    if args.epochs < 0:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}.")
    remote_flags = [f for f, v in (("--device-config", args.device_config), ("--run-cmd", args.run_cmd),
                                   ("--push-cmd", args.push_cmd), ("--info-cmd", args.info_cmd),
                                   ("--parser", args.parser)) if v]
    if args.verify < 0:
        raise InputError(f"--verify must be >= 0 (0 turns measured selection off), got {args.verify}.")
    for flag, value, low in (("--verify-rounds", args.verify_rounds, 1),
                             ("--verify-runs-per-round", args.verify_runs_per_round, 1),
                             ("--verify-warmup", args.verify_warmup, 0)):
        if value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}.")
    strategy = strategies[args.strategy].from_args(args)
    if args.epochs == 0 and not strategy.runs_without_weight_training():
        raise InputError(f"--epochs must be >= 1 for {args.strategy} (it trains the supernet's weights); only "
                         f"mnasnet with --accuracy proxy runs without weight training (--epochs 0).")
    if remote_flags and not strategy.measures_on_device() and args.verify == 0:
        raise InputError(f"{remote_flags[0]} is used only when the search measures on the device "
                         f"(measured selection, --verify K > 0, or --strategy mnasnet --latency measured).")
    if strategy.measures_on_device() and dist.world_size > 1:
        raise InputError(f"--strategy {args.strategy} times models on the device during the search, which "
                         f"{dist.world_size} processes cannot share; run it with one process (no torchrun).")
    commands = commands_from_args(args, announce=not strategy.measures_on_device() and dist.is_main)
    if args.pareto and not hasattr(strategy, "evolution"):
        raise InputError(f"--pareto is supported by spos-evolution and random, not {args.strategy}.")
    settings = SearchSettings(
        space=args.space, strategy=args.strategy, table=args.table, latency_ms=args.latency_ms, data=args.data,
        epochs=args.epochs, flops_max=args.flops_max, params_max=args.params_max, resolution=args.resolution,
        width_mult=args.width_mult, seed=args.seed, data_limit=args.data_limit, pareto=args.pareto,
        bn_batches=args.bn_batches, weight_sharing=args.weight_sharing,
        train=SupernetTrainConfig(epochs=args.epochs, batch_size=args.batch_size * dist.world_size, lr=args.lr,
                                  weight_decay=args.weight_decay, **supernet_training_options(args)),
        strategy_settings=strategy.settings(), latency_rel=args.latency_rel, verify=args.verify,
        verify_steady=SteadySettings(rounds=args.verify_rounds, runs_per_round=args.verify_runs_per_round,
                                     warmup=args.verify_warmup),
    )
    s = run_search(settings, strategy, out=args.out, resume=args.resume, commands=commands, dist=dist)
    lines = [
        f"strategy {s['strategy']} on {s['space']}: {s['evaluated']} candidates evaluated",
        f"budget: {budget_text(s)}",
        f"best: accuracy {100 * s['accuracy']:.2f}% (supernet, arch split), {s['flops'] / 1e6:.2f}M FLOPs, "
        f"{s['params'] / 1e6:.3f}M params",
        f"latency: {latency_text(s)}",
        f"constraints {'met' if s['constraints_met'] else 'NOT met'} (judged on the {s['constraints_judged_on']} "
        f"latency)",
    ]
    for w in s["pareto"]:
        lines.append(f"  budget {w['latency_budget_ms']:g} ms: accuracy {100 * w['accuracy']:.2f}%, "
                     f"predicted {w['predicted_latency_ms']:.3f} ms")
    lines.append(f"run: {args.out} (summary.json, best_arch.json, pareto.png)")
    return Report(s, "\n".join(lines))


def budget_text(s: dict) -> str:
    """The budget of a search summary: ms, and for a relative budget its reference and factor."""
    if s.get("budget_factor") is not None:
        return (f"{s['latency_budget_ms']:.4f} ms predicted = {s['budget_factor']:g} x {s['reference']} "
                f"(predicted {s['reference_predicted_ms']:.4f} ms)")
    return f"{s['latency_budget_ms']:g} ms"


def latency_text(s: dict) -> str:
    """Predicted and measured latency side by side (or why the result is predicted only)."""
    pred = f"predicted {s['predicted_latency_ms']:.4f} ms"
    if s.get("latency_source") != "measured":
        return f"{pred}; PREDICTED ONLY, not measured ({s.get('predicted_only_reason') or 'no measurement'})"
    text = (f"{pred}, measured {s['measured_latency_ms']:.4f} ms (steady, spread {s['measured_spread_pct']:.1f}%, "
            f"{len(s['verified'])} candidate(s) verified)")
    if s.get("budget_factor") is not None:
        text += (f"; measured ratio {s['measured_ratio']:.3f} vs factor {s['budget_factor']:g} "
                 f"({s['reference']} measured {s['reference_measured_ms']:.4f} ms side by side)")
    else:
        text += f"; table drift {s['table_drift']:.2f}x ({s['reference']} measured/predicted)"
    return text
