"""``hwnas train``: train an architecture from scratch, resumable per epoch (``hwnas.train.retrain``)."""

from __future__ import annotations

import argparse

from hwnas.cli.common import add_arch_args, add_distributed_args, arch_from_args, distributed_from_args
from hwnas.cli.main import Report, add_json_flag, command
from hwnas.safeio import check_output_dir
from hwnas.train import TrainConfig, train_arch

_DEFAULTS = TrainConfig()


@command("train", help="train an architecture from scratch and report its held-out accuracy")
def setup(p: argparse.ArgumentParser) -> None:
    add_arch_args(p)
    p.add_argument("--data", default=_DEFAULTS.data, help="dataset spec: digits (default), fashion-mnist[:DIR], "
                   "cifar10:DIR, imagefolder:DIR")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help=f"epochs (default {_DEFAULTS.epochs})")
    p.add_argument("--out", required=True, help="run folder: config.json, checkpoint.pt, history.jsonl, summary.json")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help=f"batch of one process (global batch: N x it under torchrun; default {_DEFAULTS.batch_size})")
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr,
                   help=f"peak learning rate, cosine decay (default {_DEFAULTS.lr})")
    p.add_argument("--momentum", type=float, default=_DEFAULTS.momentum,
                   help=f"Nesterov momentum (default {_DEFAULTS.momentum})")
    p.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay,
                   help=f"L2 on conv/linear weights (default {_DEFAULTS.weight_decay})")
    p.add_argument("--label-smoothing", type=float, default=_DEFAULTS.label_smoothing, help="default 0")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="initialization, split and batch order (default 0)")
    p.add_argument("--data-limit", type=int, help="keep at most this many examples per split (quick runs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_distributed_args(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    dist = distributed_from_args(args)
    dist.agree(lambda: check_output_dir(args.out))
    sp, arch = arch_from_args(args)
    config = TrainConfig(data=args.data, epochs=args.epochs, batch_size=args.batch_size * dist.world_size, lr=args.lr,
                         momentum=args.momentum, weight_decay=args.weight_decay,
                         label_smoothing=args.label_smoothing, seed=args.seed, data_limit=args.data_limit)
    result = train_arch(sp, arch, config=config, out_dir=args.out, resume=args.resume,
                        progress=not args.no_progress, dist=dist)
    data = {"accuracy": result.accuracy, "loss": result.loss, "val_count": result.count, "epochs": result.epochs,
            "checkpoint": str(result.checkpoint), "out": args.out, "arch": arch,
            "history": list(result.history)}
    text = (f"trained {sp.name} (resolution {arch['resolution']}, width x{arch['width_mult']}) for {result.epochs} "
            f"epoch(s) on {config.data}: held-out top-1 {100 * result.accuracy:.2f} % on {result.count} images\n"
            f"checkpoint: {result.checkpoint}")
    return Report(data, text)
