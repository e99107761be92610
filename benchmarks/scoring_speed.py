"""Candidate-scoring throughput with inherited supernet weights (``SupernetEvaluator.score``, issue 16).

Per space, a supernet is built at the resolution, width and class count of the shipped table
(default ``latency_tables/cpu-ort-1t_r32.json``: 32 px, width 1.0, 10 classes) on digits, and
``--n`` distinct random candidates are scored: BN recalibrated on ``--bn-batches`` training batches
of ``--batch-size`` images (SPOS, Guo et al. 2020, Sec. 3.4), then top-1 on the whole
architecture split. The weights are untrained (the cost does not depend on their values).
The first score of an evaluator (input preparation, first use of each block shape) is reported apart.

    .venv/bin/python benchmarks/scoring_speed.py [--spaces mobilenetv2,proxyless,mnasnet] [--n 24]
        [--threads 1] [--sharing separate] [--json]

Throughput is given in CPU time and wall time: on a shared machine trust the CPU column.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TABLE = ROOT / "latency_tables" / "cpu-ort-1t_r32.json"


def _distinct_paths(space, supernet, evaluator, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    while len(out) < n:
        idx = np.array([int(rng.integers(k)) for k in space.num_options], dtype=np.int64)
        key = evaluator.key(idx)
        if key not in seen:
            seen.add(key)
            out.append(idx)
    return out


def bench_space(name: str, *, table_device: dict, ds, n: int, bn_batches: int, batch_size: int, sharing: str,
                seed: int) -> dict:
    import torch

    from hwnas.space.loader import load_space
    from hwnas.supernet import SuperNet, SupernetEvaluator

    space = load_space(name)
    torch.manual_seed(seed)
    supernet = SuperNet(space, resolution=int(table_device["resolution"]), width_mult=float(table_device["width_mult"]),
                        num_classes=ds.num_classes, sharing=sharing).to(memory_format=torch.channels_last)
    ev = SupernetEvaluator(supernet, ds, bn_batches=bn_batches, batch_size=batch_size, seed=seed)
    paths = _distinct_paths(space, supernet, ev, n + 1, seed)
    c0, w0 = time.process_time(), time.perf_counter()
    ev.score(paths[0])
    first_cpu, first_wall = time.process_time() - c0, time.perf_counter() - w0
    c0, w0 = time.process_time(), time.perf_counter()
    for p in paths[1:]:
        ev.score(p)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"space": name, "resolution": supernet.resolution, "width_mult": supernet.width_mult, "archs": n,
            "bn_images": ev.bn_images, "eval_images": len(ev.split), "first_cpu_s": first_cpu,
            "first_wall_s": first_wall, "cpu_s_per_arch": cpu / n, "wall_s_per_arch": wall / n,
            "archs_per_cpu_s": n / cpu, "archs_per_wall_s": n / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spaces", default="mobilenetv2,proxyless,mnasnet")
    ap.add_argument("--table", default=str(DEFAULT_TABLE), help="table whose resolution and width are used")
    ap.add_argument("--n", type=int, default=24, help="distinct candidates scored per space (after the first)")
    ap.add_argument("--bn-batches", type=int, default=4, help="BN recalibration batches (hwnas search default)")
    ap.add_argument("--batch-size", type=int, default=128, help="BN recalibration batch size")
    ap.add_argument("--sharing", choices=["separate", "entangled"], default="separate")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from hwnas.train.data import load_dataset

    torch.set_num_threads(args.threads)
    device = json.loads(Path(args.table).read_text())["device"]
    ds = load_dataset("digits", seed=args.seed)
    rows = [bench_space(s, table_device=device, ds=ds, n=args.n, bn_batches=args.bn_batches,
                        batch_size=args.batch_size, sharing=args.sharing, seed=args.seed)
            for s in args.spaces.split(",") if s]
    if args.json:
        print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": args.threads,
                          "torch": torch.__version__, "rows": rows}, indent=2))
        return 0
    print(f"SupernetEvaluator.score on digits, {args.sharing} supernet, untrained weights, {args.threads} torch "
          f"thread(s), torch {torch.__version__}, {platform.machine()}; table {Path(args.table).name}")
    print(f"BN recalibration: {args.bn_batches} batches x {args.batch_size} = {rows[0]['bn_images'] if rows else 0} "
          f"training images; scoring: the whole arch split ({rows[0]['eval_images'] if rows else 0} images), "
          f"batch 256")
    print(f"{'space':<12} {'px':>4} {'width':>5} {'archs':>5} {'first (cpu s)':>13} {'cpu s/arch':>10} "
          f"{'archs/cpu-s':>11} {'archs/wall-s':>12}")
    for r in rows:
        print(f"{r['space']:<12} {r['resolution']:>4} {r['width_mult']:>5g} {r['archs']:>5} {r['first_cpu_s']:>13.3f} "
              f"{r['cpu_s_per_arch']:>10.3f} {r['archs_per_cpu_s']:>11.2f} {r['archs_per_wall_s']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
