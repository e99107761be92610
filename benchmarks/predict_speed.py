"""Batch latency prediction throughput vs the per-architecture Python path (issue 4).

The batch path (``BatchPredictor.build(model, space).latency(indices)``) evaluates many architectures of a
space at once with numpy gathers over per-slot arrays; the per-arch path validates and resolves
each architecture into blocks and sums table lookups (``LatencyModel.predict``). Target: at least
100,000 archs/s for latency alone.

    .venv/bin/python benchmarks/predict_speed.py [--table T] [--space proxyless] [--n 100000] [--json]

Without ``--table`` a synthetic table over every block of the space is used (the speed does not
depend on the values).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls, seconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", help="hwnas latency table (default: synthetic over every block of the space)")
    ap.add_argument("--space", default="proxyless")
    ap.add_argument("--n", type=int, default=100_000, help="archs per batch call")
    ap.add_argument("--per-arch", type=int, default=2000, help="archs for the per-arch path")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    from hwnas.latency.batch import BatchPredictor
    from hwnas.latency.model import LatencyModel
    from hwnas.latency.table import LatencyTable
    from hwnas.space.blocks import op_key
    from hwnas.space.loader import load_space

    torch.set_num_threads(1)
    sp = load_space(args.space)
    if args.table:
        model = LatencyModel.load(args.table)
        res = int(model.table.device.get("resolution") or sp.spec.resolution)
    else:
        res = sp.spec.resolution
        rng = np.random.default_rng(0)
        keys = sorted({op_key(b) for b in sp.all_blocks(resolution=res)})
        model = LatencyModel.from_table(LatencyTable(device={"backend": "ort-cpu", "resolution": res},
                                                     entries={k: {"median_ms": float(rng.uniform(0.05, 3))} for k in keys}))
    t0 = time.perf_counter()
    bp = BatchPredictor.build(model, sp, resolution=res)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    idx = rng.integers(0, np.asarray(sp.num_options), size=(args.n, len(sp.num_options)))
    lat_s = best_of(lambda: bp.latency(idx), args.repeats)
    bp.flops(idx[:1])  # builds the FLOPs/params arrays (fvcore, once)
    all_s = best_of(lambda: (bp.latency(idx), bp.flops(idx), bp.params(idx)), args.repeats)
    probs = [torch.softmax(torch.randn(n, dtype=torch.float64), 0).requires_grad_(True) for n in sp.num_options]

    def fwd_bwd():
        bp.expected_latency(probs).backward()

    exp_s = best_of(fwd_bwd, args.repeats * 20)
    archs = [sp.decode(i, resolution=res) for i in idx[: args.per_arch]]
    per_s = best_of(lambda: [model.predict(a, space=sp) for a in archs], 1)
    check = np.abs(bp.latency(idx[: args.per_arch]) - [model.predict(a, space=sp).latency_ms for a in archs]).max()
    out = {"space": sp.name, "resolution": res, "n": args.n, "build_s": round(build_s, 4),
           "batch_latency_archs_per_s": args.n / lat_s, "batch_lat_flops_params_archs_per_s": args.n / all_s,
           "per_arch_archs_per_s": args.per_arch / per_s, "speedup": (args.n / lat_s) / (args.per_arch / per_s),
           "expected_latency_fwd_bwd_ms": exp_s * 1e3, "max_abs_diff_ms": float(check),
           "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}, numpy {np.__version__}"}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"space {sp.name} @ {res}px ({len(sp.num_options)} decisions), table: {args.table or 'synthetic'}")
    print("| path | archs/s |")
    print("|---|---|")
    print(f"| batch latency (numpy, {args.n:,} archs per call) | {out['batch_latency_archs_per_s']:,.0f} |")
    print(f"| batch latency + FLOPs + params | {out['batch_lat_flops_params_archs_per_s']:,.0f} |")
    print(f"| per-arch Python (`LatencyModel.predict`) | {out['per_arch_archs_per_s']:,.0f} |")
    print(f"batch is {out['speedup']:,.0f}x faster; batch predictor built in {build_s:.3f} s; expected latency "
          f"forward+backward {out['expected_latency_fwd_bwd_ms']:.3f} ms; max |batch - per-arch| {check:.2e} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
