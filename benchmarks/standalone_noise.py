"""How much of a ranking check's stand-alone accuracy is seed noise (issue 16, the ranking's ceiling).

Retrains architectures whose stand-alone result a ranking check already cached (``benchmarks/
ranking.py``'s ``OUT/<space>/standalone/*.json``) with the same recipe (``hwnas.train.train_arch``:
same data, data limit, epochs, batch size and learning rate) but another seed (initialization, data
split and batch order), and prints both accuracies side by side. The per-run noise is
σ(difference) / √2; Kendall τ between the two seeds' accuracies is the ceiling any supernet's τ
against one seed can reach on average (Yu et al., ICLR 2020, Sec. 4, rank stand-alone models the
same way). Resumable: each retrained result is kept as it finishes under ``--out``.

Usage:
  python benchmarks/standalone_noise.py --cache benchmarks/out/ranking/mobilenetv2/standalone --archs 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, help="a ranking check's stand-alone cache folder")
    ap.add_argument("--archs", type=int, default=8, help="cached architectures to retrain (in index order)")
    ap.add_argument("--seed", type=int, default=1, help="the other seed")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-limit", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--out", default="benchmarks/out/standalone_noise")
    ap.add_argument("--shard", default="0/1", help="K/N: retrain only every N-th arch from the K-th (parallel runs)")
    args = ap.parse_args(argv)

    from scipy.stats import kendalltau

    from hwnas.jsonio import read_json, write_json_atomic
    from hwnas.space import load_named_space
    from hwnas.train import TrainConfig, train_arch

    cached = sorted((read_json(p, what="cached result") for p in Path(args.cache).glob("*.json")),
                    key=lambda r: r["index"])[: args.archs]
    k, n = (int(v) for v in args.shard.split("/"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, rec in enumerate(cached):
        done = out / f"{rec['index']:02d}_seed{args.seed}.json"
        if not done.exists() and i % n == k:
            space = load_named_space(rec["arch"]["space"], field="arch.space")
            cfg = TrainConfig(data=args.data, epochs=int(rec["epochs"]), batch_size=args.batch_size, lr=args.lr,
                              seed=args.seed, data_limit=args.data_limit)
            r = train_arch(space, rec["arch"], config=cfg, out_dir=out / f"{rec['index']:02d}_seed{args.seed}.run",
                           resume=True, progress=False)
            write_json_atomic(done, {"index": rec["index"], "accuracy": r.accuracy, "count": r.count})
        if done.exists():
            rows.append((rec["index"], rec["standalone_accuracy"], read_json(done, what="result")["accuracy"]))
    if not rows:
        return 0
    print(f"{'arch':>4} {'seed 0':>8} {'seed ' + str(args.seed):>8} {'diff':>7}")
    for idx, a, b in rows:
        print(f"{idx:4d} {a * 100:7.2f}% {b * 100:7.2f}% {(b - a) * 100:+6.2f}")
    a, b = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    d = (b - a) * 100
    tau = kendalltau(a, b).statistic if len(rows) > 2 else float("nan")
    print(f"n = {len(rows)}; per-run noise sigma(diff)/sqrt(2) = {d.std(ddof=1) / np.sqrt(2):.2f} points; "
          f"spread across archs sigma = {np.concatenate([a, b]).std(ddof=1) * 100:.2f} points; "
          f"Kendall tau(seed 0, seed {args.seed}) = {tau:.3f}")
    print(json.dumps({"n": len(rows), "noise_sigma_pts": float(d.std(ddof=1) / np.sqrt(2)),
                      "arch_sigma_pts": float(np.concatenate([a, b]).std(ddof=1) * 100), "kendall_tau": float(tau)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
