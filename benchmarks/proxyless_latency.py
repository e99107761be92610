"""Latency tracking of ProxylessNAS: does the derived arch's predicted latency land near the budget T?

For three budgets between the smallest and the largest predicted latency of the space (by default
at 25 %, 50 % and 75 % of that range) and each loss form (multiplicative, the issue's target, and
additive for contrast), runs the ``proxyless`` strategy (gradient mode) on the same data, seed and
settings, and reports the derived architecture's predicted latency against T (target: within
±15 %), the final expected latency E[LAT] under softmax(α), and the inherited-weight accuracy. Use
a MEASURED table (``hwnas profile``, e.g. ``latency_tables/cpu-ort-1t_r32.json``); synthetic tables
only test the mechanics.

    .venv/bin/python benchmarks/proxyless_latency.py --table latency_tables/cpu-ort-1t_r32.json \\
        --epochs 20 --out runs/bench_proxyless_latency --json benchmarks/proxyless_latency.json

Each run directory is resumable: run the same command again after an interruption.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwnas.jsonio import write_json_atomic  # noqa: E402
from hwnas.latency.batch import BatchPredictor  # noqa: E402
from hwnas.latency.model import LatencyModel  # noqa: E402
from hwnas.latency.table import LatencyTable  # noqa: E402
from hwnas.search.proxyless_steps import ProxylessConfig  # noqa: E402
from hwnas.search.runner import SearchSettings, run_search  # noqa: E402
from hwnas.search.strategies.proxyless import Proxyless  # noqa: E402
from hwnas.space.bounds import minimize  # noqa: E402
from hwnas.space.loader import load_space  # noqa: E402
from hwnas.supernet.training import SupernetTrainConfig  # noqa: E402


def latency_range(table: str, space_name: str, *, num_classes: int) -> tuple[float, float, int, float]:
    """Smallest and largest predicted latency (ms) of the space, exact, and the table's resolution / width."""
    t = LatencyTable.load(table)
    space = load_space(space_name)
    res = int(t.device.get("resolution") or space.spec.resolution)
    width = float(t.device.get("width_mult") or 1.0)
    pred = BatchPredictor.build(LatencyModel.load(table), space, resolution=res, width_mult=width, num_classes=num_classes)
    terms, const = pred.terms("latency")
    n = [int(v) for v in pred.num_options]
    lo, _ = minimize(terms, n, const=const)
    neg, _ = minimize([(d, -arr) for d, arr in terms], n, const=-const)
    return lo, -neg, res, width


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True, help="measured latency table")
    p.add_argument("--space", default="proxyless")
    p.add_argument("--data", default="digits")
    p.add_argument("--data-limit", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=10, help="classes of --data (digits: 10)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="weight SGD learning rate")
    p.add_argument("--levels", default="0.25,0.5,0.75", help="budgets as fractions of [min, max] predicted latency")
    p.add_argument("--budgets", default=None, help="explicit budgets in ms (comma-separated), instead of --levels")
    p.add_argument("--losses", default="mul,add", help="loss forms to run (mul, add), comma-separated")
    p.add_argument("--arch-lr", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=0.3)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=int, default=None)
    p.add_argument("--weight-sharing", choices=["separate", "entangled"], default="entangled",
                   help="supernet candidates (entangled trains in CPU-sized runs; see hwnas.supernet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "runs" / "bench_proxyless_latency"))
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    lo, hi, res, width = latency_range(args.table, args.space, num_classes=args.num_classes)
    if args.budgets:
        budgets = [float(v) for v in args.budgets.split(",")]
    else:
        budgets = [lo + float(f) * (hi - lo) for f in args.levels.split(",")]
    rows = []
    configs = {}
    for loss in args.losses.split(","):
        config = ProxylessConfig(loss=loss, beta=args.beta, lam=args.lam, arch_lr=args.arch_lr,
                                 warmup_epochs=args.warmup_epochs)
        configs[loss] = config.to_json()
        for budget in budgets:
            budget = float(f"{budget:.4g}")
            out = Path(args.out) / f"{loss}_T{budget:g}ms"
            settings = SearchSettings(space=args.space, strategy="proxyless", table=args.table, latency_ms=budget,
                                      data=args.data, epochs=args.epochs, seed=args.seed, data_limit=args.data_limit,
                                      weight_sharing=args.weight_sharing, train=SupernetTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                                                lr=args.lr),
                                      strategy_settings=config.to_json())
            t0 = time.time()
            s = run_search(settings, Proxyless(config=config), out=str(out), resume=(out / "config.json").exists())
            ex = s["extra"]
            rows.append({"loss": loss, "budget_ms": budget, "derived_ms": s["predicted_latency_ms"],
                         "ratio": s["predicted_latency_ms"] / budget,
                         "within_15pct": abs(s["predicted_latency_ms"] / budget - 1) <= 0.15,
                         "expected_ms": ex["expected_latency_ms"], "accuracy": s["accuracy"],
                         "seconds": round(time.time() - t0, 1), "run": str(out)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"table": args.table, "space": args.space, "resolution": res, "width_mult": width, "data": args.data,
              "epochs": args.epochs, "seed": args.seed, "min_ms": lo, "max_ms": hi, "configs": configs,
              "rows": rows}
    print(f"\n{args.space} @ {res}px, width {width:g}, {args.data}, {args.epochs} epochs, arch lr {args.arch_lr:g}, "
          f"seed {args.seed}; predicted latency range of the space {lo:.4f}–{hi:.4f} ms\n")
    print("| loss | budget T (ms) | derived arch (ms) | derived / T | within ±15 % | E[LAT] (ms) | accuracy |")
    print("|---|---:|---:|---:|:---:|---:|---:|")
    for r in rows:
        ok = "yes" if r["within_15pct"] else "no"
        print(f"| {r['loss']} | {r['budget_ms']:.4g} | {r['derived_ms']:.4f} | {r['ratio']:.3f} | {ok} "
              f"| {r['expected_ms']:.4f} | {100 * r['accuracy']:.1f} % |")
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
