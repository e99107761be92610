"""``hwnas supernet rank``: Kendall tau of a supernet's ranking against stand-alone training."""

from __future__ import annotations

import argparse

from hwnas.cli.common import add_distributed_args, distributed_from_args
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.cli.supernet_args import add_supernet_training_args, supernet_training_options
from hwnas.errors import InputError
from hwnas.safeio import check_output_dir
from hwnas.supernet import SHARING, SupernetTrainConfig
from hwnas.supernet.rank_check import RankCheckConfig, SupernetSource, run_rank_check, source_from_run

#: Flags that describe the supernet to train; a --run brings its own.
_TRAIN_FLAGS = (("--space", "space"), ("--data", "data"), ("--data-limit", "data_limit"),
                ("--resolution", "resolution"), ("--width-mult", "width_mult"),
                ("--weight-sharing", "weight_sharing"), ("--supernet-epochs", "supernet_epochs"),
                ("--bn-batches", "bn_batches"), ("--warmup-epochs", "warmup_epochs"),
                ("--candidate-init", "candidate_init"), ("--sandwich", "sandwich"),
                ("--shared-epochs", "shared_epochs"))


@command("supernet rank", help="check a supernet's ranking: inherited-weight vs stand-alone accuracy of N "
                               "architectures (Kendall tau, Spearman rho, top-5 overlap, scatter plot)")
def setup(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("the supernet: a finished search run (--run) or trained here (--space ...)")
    src.add_argument("--run", help="finished hwnas search run folder (its checkpoint.pt and config.json)")
    src.add_argument("--space", help="search space name or file (to train a supernet here)")
    src.add_argument("--table", help="latency table (default with --run: the run's)")
    src.add_argument("--data", help="digits | fashion-mnist[:DIR] | cifar10:DIR | imagefolder:DIR (default digits)")
    src.add_argument("--data-limit", type=int, help="keep at most this many examples per split (quick runs)")
    src.add_argument("--resolution", type=int, help="input resolution, pixels (default: the table's)")
    src.add_argument("--width-mult", type=float, help="width multiplier (default: the table's)")
    src.add_argument("--weight-sharing", choices=SHARING, help="supernet candidates (default separate)")
    src.add_argument("--supernet-epochs", type=int, help="supernet training epochs (default: --epochs)")
    src.add_argument("--bn-batches", type=int, help="training batches to recalibrate BN before scoring (default 4)")
    add_supernet_training_args(src, default=None)
    p.add_argument("--archs", type=int, default=10, metavar="N", help="architectures to compare, >= 3 (default 10)")
    p.add_argument("--epochs", type=int, default=1, help="stand-alone training epochs per architecture (default 1)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="batch size of all training, per process (global: N x it under torchrun; default 64)")
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate of all training (default 0.05)")
    p.add_argument("--pool", type=int, default=1000,
                   help="random architectures drawn to find the latency quantiles (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and of the training (default 0)")
    p.add_argument("--out", required=True, help="output folder (results, ranking.json, ranking.png)")
    p.add_argument("--resume", action="store_true", help="continue the check in --out where it stopped")
    p.add_argument("--standalone-cache", metavar="DIR",
                   help="folder shared between checks for the stand-alone runs (one per architecture and recipe)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    add_distributed_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _source(args: argparse.Namespace, *, batch_size: int) -> SupernetSource:
    if args.run is not None:
        given = [flag for flag, name in _TRAIN_FLAGS if getattr(args, name) is not None]
        if given:
            raise InputError(f"{given[0]} cannot be combined with --run (the run's config.json sets it).")
        return source_from_run(args.run, table=args.table)
    if args.space is None or args.table is None:
        raise InputError(f"{'--space' if args.space is None else '--table'} is required when there is no --run "
                         f"(a supernet is then trained here).")
    epochs = args.supernet_epochs if args.supernet_epochs is not None else args.epochs
    if epochs < 1:
        raise InputError(f"--supernet-epochs must be a positive integer, got {epochs}.")
    if args.bn_batches is not None and args.bn_batches < 1:
        raise InputError(f"--bn-batches must be a positive integer, got {args.bn_batches}.")
    if args.data_limit is not None and args.data_limit < 1:
        raise InputError(f"--data-limit must be a positive integer, got {args.data_limit}.")
    return SupernetSource(space=args.space, table=args.table, data=args.data or "digits", data_limit=args.data_limit,
                          resolution=args.resolution, width_mult=args.width_mult,
                          weight_sharing=args.weight_sharing or "separate", seed=args.seed,
                          bn_batches=args.bn_batches or 4,
                          train=SupernetTrainConfig(epochs=epochs, batch_size=batch_size, lr=args.lr,
                                                    **supernet_training_options(args)))


def run(args: argparse.Namespace) -> Report:
    dist = distributed_from_args(args)
    dist.agree(lambda: check_output_dir(args.out))
    batch = args.batch_size * dist.world_size  # the global batch
    source = _source(args, batch_size=batch)
    config = RankCheckConfig(archs=args.archs, epochs=args.epochs, seed=args.seed, pool=args.pool,
                             batch_size=batch, lr=args.lr)
    r = run_rank_check(source, config, out=args.out, resume=args.resume, progress=not args.no_progress,
                       standalone_cache=args.standalone_cache, dist=dist)
    fmt = lambda v: "undefined (one ranking is constant)" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"supernet ranking on {r['space']} ({r['data']}), {r['n']} architectures stratified over predicted "
             f"latency, {r['epochs']} stand-alone epoch(s):",
             f"Kendall tau-b {fmt(r['kendall_tau'])}, Spearman rho {fmt(r['spearman'])}, "
             f"top-{r['top_k']} overlap {r['top5_overlap']:.2f}"]
    for pr in r["pairs"]:
        lines.append(f"  #{pr['index']:02d} {pr['predicted_latency_ms']:.4f} ms: supernet "
                     f"{100 * pr['supernet_accuracy']:.2f}%, stand-alone {100 * pr['standalone_accuracy']:.2f}%")
    lines.append(f"plot: {r['plot']}; report: {r['out']}/ranking.json")
    return Report(r, "\n".join(lines))
