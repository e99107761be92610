"""Evolution vs random search at equal candidate budget, on Fashion-MNIST (issue 6).

Per seed: one supernet (SPOS uniform sampling) is trained; evolution (SPOS Alg. 1) and random search
then score the same number of candidates with the same evaluator (inherited weights, BN
recalibration, architecture-validation split). For every winner, the exported model's latency is
measured with the table's own backend settings and compared with the budget (target: every winner
within budget + 5%). Needs the Debian package ``dataset-fashion-mnist`` (installed here by
``apt-get install dataset-fashion-mnist``) and a measured table for the space at the resolution.

Usage:
  python benchmarks/search_quality.py --table latency_tables/<table>.json --space mobilenetv2 \
      --latency-ms 0.5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hwnas.jsonio import write_json_atomic
from hwnas.latency.batch import BatchPredictor
from hwnas.latency.model import LatencyModel
from hwnas.latency.table import LatencyTable
from hwnas.profile.backend import BackendConfig
from hwnas.profile.measure import measure_module
from hwnas.search.objective import Constraints
from hwnas.search.strategies.base import Costs
from hwnas.search.strategies.evolution import EvolutionConfig, evolve, random_search
from hwnas.space.build import build_model
from hwnas.space.loader import load_space
from hwnas.supernet.evaluator import SupernetEvaluator
from hwnas.supernet.samplers import uniform_paths
from hwnas.supernet.supernet import SuperNet
from hwnas.supernet.training import SupernetTrainConfig, train_supernet
from hwnas.train.data import load_dataset
from hwnas.train.runs import RunDir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--space", default="mobilenetv2")
    ap.add_argument("--latency-ms", type=float, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--train-limit", type=int, default=6000, help="examples per split")
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--generations", type=int, default=10)
    ap.add_argument("--weight-sharing", choices=["separate", "entangled"], default="entangled")
    ap.add_argument("--json", help="also write every winner (arch JSON, accuracy, predicted and measured ms) here, "
                                   "so the winners can be measured again with `hwnas latency predict`/`export`")
    args = ap.parse_args()
    torch.set_num_threads(1)

    sp = load_space(args.space)
    table = LatencyTable.load(args.table)
    model = LatencyModel.load(args.table)
    res = int(table.device["resolution"])
    wm = float(table.device.get("width_mult", 1.0))
    backend = BackendConfig.from_header(table.device, commands=None)
    evo_cfg = EvolutionConfig(population=args.population, generations=args.generations, top_k=max(2, args.population // 5))
    rows = []
    t0 = time.time()
    for seed in args.seeds:
        ds = load_dataset(args.data, seed=seed, limit=args.train_limit)
        pred = BatchPredictor.build(model, sp, resolution=res, width_mult=wm, num_classes=ds.num_classes)
        costs = Costs(latency=pred.latency, flops=pred.flops, params=pred.params)
        cons = Constraints(latency_ms=args.latency_ms)
        feasible = lambda I: cons.feasible(latency=pred.latency(I), flops=0, params=0)  # noqa: E731
        torch.manual_seed(seed)
        sn = SuperNet(sp, resolution=res, width_mult=wm, num_classes=ds.num_classes,
                      sharing=args.weight_sharing).to(memory_format=torch.channels_last)
        with tempfile.TemporaryDirectory() as tmp:
            run = RunDir(Path(tmp) / "run", config={}, resume=False)
            train_supernet(sn, ds, uniform_paths(sp), config=SupernetTrainConfig(epochs=args.epochs), seed=seed, run=run)
        ev = SupernetEvaluator(sn, ds, seed=seed)
        results = {
            "evolution": evolve(sp, score=ev.score, feasible=feasible, costs=costs, config=evo_cfg, seed=seed),
            "random": random_search(sp, score=ev.score, feasible=feasible, costs=costs,
                                    evaluations=evo_cfg.evaluations, batch=evo_cfg.population, seed=seed),
        }
        for name, st in results.items():
            idx = np.asarray(st["best"]["indices"])
            arch = sp.decode(idx, resolution=res, width_mult=wm, num_classes=ds.num_classes)
            net = build_model(sp.resolve(arch))
            measured = measure_module(net, input_shape=(1, 3, res, res), config=backend, repeats=50, warmup=10)
            rows.append({"seed": seed, "strategy": name, "evaluated": len(st["evaluated"]),
                         "accuracy": st["best"]["accuracy"], "predicted_ms": float(pred.latency(idx[None])[0]),
                         "measured_ms": measured["median_ms"], "arch": arch})
    print(f"{args.space} at {res}px x{wm}, {args.data} (<= {args.train_limit} per split), supernet {args.epochs} epochs, "
          f"{args.weight_sharing} candidates, budget {args.latency_ms} ms, backend {backend.backend} {backend.threads} thread(s); "
          f"{evo_cfg.evaluations} candidates per strategy; {time.time() - t0:.0f} s")
    print(f"{'seed':>4} {'strategy':>10} {'evaluated':>9} {'acc %':>7} {'pred ms':>8} {'meas ms':>8} {'<= T+5%':>8}")
    for r in rows:
        ok = r["measured_ms"] <= 1.05 * args.latency_ms
        print(f"{r['seed']:>4} {r['strategy']:>10} {r['evaluated']:>9} {100 * r['accuracy']:>7.2f} "
              f"{r['predicted_ms']:>8.3f} {r['measured_ms']:>8.3f} {str(ok):>8}")
    if args.json:
        write_json_atomic(args.json, {"latency_ms": args.latency_ms, "table": args.table, "rows": rows})
    for name in ("evolution", "random"):
        accs = [100 * r["accuracy"] for r in rows if r["strategy"] == name]
        print(f"mean winner accuracy, {name}: {np.mean(accs):.2f}% (+- {np.std(accs):.2f})")


if __name__ == "__main__":
    main()
