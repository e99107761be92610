"""Command-line flags of the supernet-training options shared by ``hwnas search`` and ``hwnas supernet rank``."""

from __future__ import annotations

import argparse
from typing import Any

from hwnas.errors import InputError
from hwnas.supernet import SupernetTrainConfig
from hwnas.supernet.supernet import CANDIDATE_INIT


def add_supernet_training_args(group, *, default: Any) -> None:
    """The supernet-training options beyond the papers' recipe (``SupernetTrainConfig``).

    ``default`` None leaves them unset (so ``--run`` can refuse them); else the config's defaults.
    """
    d = SupernetTrainConfig()
    pick = (lambda v: None) if default is None else (lambda v: v)  # noqa: E731
    group.add_argument("--warmup-epochs", type=float, default=pick(d.warmup_epochs),
                       help=f"linear learning-rate warm-up of the supernet, epochs (Goyal et al. 2017; "
                            f"default {d.warmup_epochs:g})")
    group.add_argument("--candidate-init", choices=CANDIDATE_INIT, default=pick(d.candidate_init),
                       help=f"how the candidates of a layer start: independent (the papers) or aligned (slices of "
                            f"one module, trained separately; default {d.candidate_init})")
    group.add_argument("--shared-epochs", type=float, default=pick(d.shared_epochs),
                       help=f"epochs a separate supernet first trains entangled, before its candidates split and "
                            f"train on their own (Few-shot NAS; default {d.shared_epochs:g})")
    group.add_argument("--sandwich", action="store_true", default=pick(d.sandwich) or None,
                       help="sandwich rule with in-place distillation (BigNAS): also train the largest and the "
                            "smallest path every step" + (" (default on)" if d.sandwich else ""))


def supernet_training_options(args: argparse.Namespace) -> dict[str, Any]:
    """``SupernetTrainConfig`` fields from the flags of ``add_supernet_training_args`` (unset: default)."""
    d = SupernetTrainConfig()
    out = {"warmup_epochs": args.warmup_epochs, "candidate_init": args.candidate_init, "sandwich": args.sandwich,
           "shared_epochs": args.shared_epochs}
    out = {k: (getattr(d, k) if v is None else v) for k, v in out.items()}
    for key in ("warmup_epochs", "shared_epochs"):
        if not out[key] >= 0:
            raise InputError(f"--{key.replace('_', '-')} must be >= 0, got {out[key]}.")
    out["sandwich"] = bool(out["sandwich"])
    return out
