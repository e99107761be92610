"""TNAS (issue 20): TNAS-OS against SPOS + evolution and random search, the Fig. 2 analysis, the ε_inc sweep.

1. **Comparison** (per space: ``nasbench201`` and ``spos-shufflenet``, Fashion-MNIST at 32 px, one
   latency budget, every seed): ``tnas``, ``spos-evolution`` and ``random`` through ``hwnas search``
   with the same supernet epochs, data and batch size (so the same supernet steps) and the same number
   of supernet-scored candidates: SPOS and random score ``--population`` × ``--generations``; TNAS
   spends part of that budget on the VAE's data during training (its pool and re-scored top-k at
   each update) and the rest on evolution from its VAE's initial population, with
   ``generations = (P·G − training scores) / P``. Each winner is trained stand-alone with one seeded
   recipe (``hwnas train``; ``search_quality.retrain``); the table gives the winners' stand-alone
   accuracy, mean ± std over seeds, and TNAS's paired difference to each baseline.
2. **Fig. 2** (Yan et al. 2021, Sec. 5.3; ``nasbench201``, ``--fig2-seeds``): the accuracy of
   three sets of architectures: *VAE generation* (TNAS's initial population, drawn from p_θ),
   *VAE training data* (its last top-k) and *random top-k* (the top k by the same final supernet of as
   many uniform feasible architectures as TNAS scored in training). There is no NAS-Bench-201
   ground truth here: each set's first ``--fig2-n`` architectures are trained stand-alone (the
   recipe above), and every architecture of the sets gets its supernet score.
3. **ε_inc sweep** (Table 4; ``nasbench201``, every seed): TNAS with ``--sweep`` values of ε_inc,
   the winners' stand-alone accuracy (mean ± std, max) and supernet accuracy.

Searches run with ``--verify 0`` (predicted budget only): this benchmark is about search quality;
``budget_hit.py`` checks measured budgets. Every run folder resumes (re-running continues).
Needs Fashion-MNIST (Debian ``dataset-fashion-mnist``, /usr/share/datasets/fashion-mnist) for the
default ``--data``. Markdown tables on stdout, progress on stderr, every row in ``OUT/tnas.json``.

Usage:
  python benchmarks/tnas.py                  # the full benchmark (see RESULTS.md for its duration)
  python benchmarks/tnas.py --quick          # a smoke run on digits: tiny sizes, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_quality import ROOT, paired_t, retrain, run_one  # noqa: E402

from hwnas.jsonio import write_json_atomic  # noqa: E402
from hwnas.latency import BatchPredictor, LatencyModel  # noqa: E402
from hwnas.search.objective import Constraints  # noqa: E402
from hwnas.space import load_space  # noqa: E402
from hwnas.supernet import SuperNet, SupernetEvaluator  # noqa: E402
from hwnas.train import load_dataset  # noqa: E402
from hwnas.train.checkpoint import load_checkpoint  # noqa: E402

#: Per space: its table and its one budget (nasbench201: 62% of uniform cells fit; spos-shufflenet: ~45%).
SPACES = {"nasbench201": ("latency_tables/cpu-ort-1t-cells_r32.json", ["--latency-rel", "resnet:0.7"]),
          "spos-shufflenet": ("latency_tables/cpu-ort-1t_r32.json", ["--latency-ms", "0.63"])}
METHODS = ("tnas", "spos-evolution", "random")
GROUPS = ("vae_generation", "vae_training_data", "random_topk")


def tnas_updates(epochs: int, interval: int) -> int:
    """VAE updates of a run: after every ``interval``-th epoch and after the last."""
    return sum(1 for e in range(1, epochs + 1) if e % interval == 0 or e == epochs)


def tnas_generations(args: argparse.Namespace) -> tuple[int, int]:
    """(supernet scores TNAS spends in training, its evolution's generations) at SPOS's P·G scores.

    Training: the first update scores the pool, each later one the pool and the top-k again.
    """
    updates = tnas_updates(args.epochs, args.tnas_interval)
    training = args.tnas_pool + (updates - 1) * (args.tnas_pool + args.tnas_topk)
    left = args.population * args.generations - training
    if left < args.population or left % args.population:
        raise SystemExit(f"TNAS spends {training} scores in training; population x generations - {training} must be "
                         f"a positive multiple of --population ({args.population}); adjust --generations or the "
                         f"TNAS pool/top-k/interval.")
    return training, left // args.population


def space_args(args: argparse.Namespace, space: str, *, search_args: str) -> argparse.Namespace:
    """The ``search_quality`` settings of one space (its table and budget) and strategy flags."""
    table, budget = SPACES[space]
    ns = argparse.Namespace(**vars(args))
    ns.space, ns.table, ns.search_args = space, table, search_args
    ns.latency_ms = float(budget[1]) if budget[0] == "--latency-ms" else None
    ns.latency_rel = budget[1] if budget[0] == "--latency-rel" else None
    return ns


def tnas_flags(args: argparse.Namespace, eps_inc: float) -> str:
    _, gens = tnas_generations(args)
    return (f"--population {args.population} --generations {gens} --top-k {args.top_k} --tnas-eps-inc {eps_inc} "
            f"--tnas-topk {args.tnas_topk} --tnas-pool {args.tnas_pool} --tnas-interval {args.tnas_interval}")


def search(args: argparse.Namespace, space: str, method: str, seed: int, out: Path, *, eps_inc: float) -> dict:
    """One search and its winner's stand-alone training (``search_quality.run_one``), plus TNAS's counts."""
    ns = space_args(args, space, search_args=tnas_flags(args, eps_inc) if method == "tnas" else "")
    row = run_one(method, seed, ns, out)
    summary = Path(row["search_out"]) / "summary.json"
    tnas = json.loads(summary.read_text())["extra"].get("tnas") if summary.exists() else None
    row.update(space=space, eps_inc=eps_inc if method == "tnas" else None,
               scored=tnas["evaluations"] if tnas else row["evaluated"], tnas=tnas)
    return row


# ---- Fig. 2 ------------------------------------------------------------------------------------


def _scorer(run: Path) -> tuple[SupernetEvaluator, Any, Any, dict]:
    """The final supernet of a finished run (weights from its checkpoint), its scorer and feasibility."""
    cfg = json.loads((run / "config.json").read_text())
    res = cfg["resolved"]
    space = load_space(cfg["space"])
    ds = load_dataset(cfg["data"], seed=cfg["seed"], limit=cfg["data_limit"])
    net = SuperNet(space, resolution=res["resolution"], width_mult=res["width_mult"], num_classes=res["num_classes"],
                   sharing=cfg["weight_sharing"]).to(memory_format=torch.channels_last)
    net.load_state_dict(load_checkpoint(run / "checkpoint.pt")["supernet"])
    evaluator = SupernetEvaluator(net, ds, bn_batches=cfg["bn_batches"], seed=cfg["seed"])
    bp = BatchPredictor.build(LatencyModel.load(cfg["table"]), space, resolution=res["resolution"],
                              width_mult=res["width_mult"], num_classes=res["num_classes"])
    c = Constraints(latency_ms=res["latency_budget_ms"], flops_max=cfg["flops_max"], params_max=cfg["params_max"])

    def feasible(idx: np.ndarray) -> np.ndarray:
        return c.feasible(latency=bp.latency(idx), flops=bp.flops(idx), params=bp.params(idx))

    return evaluator, space, feasible, res


def fig2_sets(run: Path, *, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The three sets of one TNAS run, each ``[{indices, supernet}]`` best first (module docstring)."""
    t = json.loads((run / "summary.json").read_text())["extra"]["tnas"]
    evaluator, space, feasible, res = _scorer(run)
    rng = np.random.default_rng([seed, 2020])
    n = np.asarray(space.num_options)
    draws: dict[tuple, None] = {}
    for _ in range(1000 * t["training_evaluations"]):
        if len(draws) >= t["training_evaluations"]:
            break
        idx = (rng.random((1, n.size)) * n).astype(np.int64)
        if feasible(idx)[0]:
            draws.setdefault(tuple(int(v) for v in idx[0]), None)

    def scored(pool) -> list[dict[str, Any]]:
        rows = [{"indices": [int(v) for v in i], "supernet": evaluator.score(np.asarray(i))} for i in pool]
        return sorted(rows, key=lambda r: -r["supernet"])

    top = scored(draws)[: len(t["vae_data"])]
    again = {tuple(r["indices"]): r["supernet"] for r in scored([i for i, _ in t["vae_data"]])}
    if any(abs(again[tuple(i)] - a) > 1e-9 for i, a in t["vae_data"]):  # the rebuilt supernet is the run's
        raise SystemExit(f"{run}: the rebuilt supernet scores the VAE's data differently from the run")
    return {"vae_generation": scored(t["vae_generated"]), "vae_training_data": scored([i for i, _ in t["vae_data"]]),
            "random_topk": top, "_arch": {"resolution": res["resolution"], "width_mult": res["width_mult"],
                                          "num_classes": res["num_classes"]}}


def fig2(args: argparse.Namespace, out: Path, seed: int) -> dict[str, Any]:
    """Fig. 2 for one seed: the sets' supernet scores and their first ``--fig2-n`` trained stand-alone."""
    run = out / "nasbench201" / f"eps{args.tnas_eps_inc:g}" / f"seed{seed}" / "tnas"
    sets = fig2_sets(run, seed=seed)
    arch = sets.pop("_arch")
    space = load_space("nasbench201")
    ns = space_args(args, "nasbench201", search_args="")
    folder = out / "nasbench201" / "fig2" / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    result = {}
    for group, rows in sets.items():
        for k, r in enumerate(rows[: args.fig2_n]):
            path = folder / f"{group}_{k}.json"
            write_json_atomic(path, space.decode(np.asarray(r["indices"]), **arch))
            r["standalone"] = retrain(path, seed, ns, folder)["accuracy"]
        result[group] = rows
    return result


# ---- tables ------------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
    return f"{100 * np.mean(vals):.2f} ± {100 * std:.2f}"


def comparison_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| space | method | winners / seeds | stand-alone acc % (mean ± std) | supernet acc % | scored | "
             "pred ms | search s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for space in SPACES:
        for method in METHODS:
            mine = [r for r in rows if r["space"] == space and r["strategy"] == method and r.get("main")]
            if not mine:
                continue
            acc = [r["standalone_accuracy"] for r in mine]
            lines.append(f"| {space} | {method} | {sum(a is not None for a in acc)}/{len(mine)} | {_ms(acc)} | "
                         f"{_ms([r['search_accuracy'] for r in mine])} | "
                         f"{np.mean([r['scored'] or 0 for r in mine]):.0f} | "
                         f"{np.mean([r['predicted_ms'] or 0 for r in mine]):.4f} | "
                         f"{np.mean([r['search_seconds'] or 0 for r in mine]):.0f} |")
    lines += ["", "| space | TNAS vs | paired seeds | mean diff (pp) | t | p (two-sided) | wins |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for space in SPACES:
        acc = {(r["strategy"], r["seed"]): r["standalone_accuracy"] for r in rows
               if r["space"] == space and r.get("main") and r["standalone_accuracy"] is not None}
        for base in METHODS[1:]:
            seeds = sorted(s for (m, s) in acc if m == "tnas" and (base, s) in acc)
            if not seeds:
                continue
            d = np.array([acc["tnas", s] - acc[base, s] for s in seeds])
            t, p = paired_t(d)
            lines.append(f"| {space} | {base} | {len(seeds)} | {100 * d.mean():+.2f} | "
                         f"{'n/a' if t is None else f'{t:.2f}'} | {'n/a' if p is None else f'{p:.3f}'} | "
                         f"{int((d > 0).sum())} |")
    return "\n".join(lines)


def fig2_table(results: list[dict[str, Any]]) -> str:
    lines = ["| set | archs (supernet) | supernet acc % (mean ± std) | trained stand-alone | stand-alone acc % "
             "(mean ± std) | min | max |", "|---|---:|---:|---:|---:|---:|---:|"]
    for group in GROUPS:
        rows = [r for res in results for r in res[group]]
        alone = [r["standalone"] for r in rows if "standalone" in r]
        lo_hi = (f"{100 * min(alone):.2f} | {100 * max(alone):.2f}") if alone else "n/a | n/a"
        lines.append(f"| {group} | {len(rows)} | {_ms([r['supernet'] for r in rows])} | {len(alone)} | "
                     f"{_ms(alone)} | {lo_hi} |")
    return "\n".join(lines)


def sweep_table(rows: list[dict[str, Any]], values: list[float]) -> str:
    lines = ["| ε_inc | seeds | stand-alone acc % (mean ± std) | max % | supernet acc % | VAE data supernet acc % "
             "(mean) | final ε |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for v in values:
        mine = [r for r in rows if r["space"] == "nasbench201" and r["strategy"] == "tnas" and r["eps_inc"] == v]
        acc = [r["standalone_accuracy"] for r in mine if r["standalone_accuracy"] is not None]
        data = [np.mean([a for _, a in r["tnas"]["vae_data"]]) for r in mine if r["tnas"]]
        final = [r["tnas"]["eps"] for r in mine if r["tnas"]]
        lines.append(f"| {v:g} | {len(mine)} | {_ms(acc)} | {100 * max(acc) if acc else math.nan:.2f} | "
                     f"{_ms([r['search_accuracy'] for r in mine])} | {100 * np.mean(data) if data else math.nan:.2f} | "
                     f"{np.mean(final) if final else math.nan:.2f} |")
    return "\n".join(lines)


# ---- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: digits, tiny sizes, 2 seeds, 1 sweep value")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--spaces", default=",".join(SPACES), help="comma-separated subset of " + ", ".join(SPACES))
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-limit", type=int, default=1000, help="examples per split (search and retrain)")
    ap.add_argument("--epochs", type=int, default=6, help="supernet epochs of every search (equal steps)")
    ap.add_argument("--population", type=int, default=10, help="candidates per generation")
    ap.add_argument("--generations", type=int, default=6, help="SPOS and random: generations (P x G scores)")
    ap.add_argument("--top-k", type=int, default=4, help="evolution: parents kept")
    ap.add_argument("--tnas-eps-inc", type=float, default=0.2, help="TNAS of the comparison and Fig. 2")
    ap.add_argument("--tnas-topk", type=int, default=10)
    ap.add_argument("--tnas-pool", type=int, default=10)
    ap.add_argument("--tnas-interval", type=int, default=3)
    ap.add_argument("--sweep", type=float, nargs="*", default=[0.0, 0.05, 0.1, 0.2], help="ε_inc values (Table 4)")
    ap.add_argument("--fig2-seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--fig2-n", type=int, default=3, help="architectures per set trained stand-alone")
    ap.add_argument("--verify", type=int, default=0, help="measured selection per search (0: predicted budget)")
    ap.add_argument("--retrain-epochs", type=int, default=4)
    ap.add_argument("--retrain-lr", type=float, default=0.05)
    ap.add_argument("--retrain-batch-size", type=int, default=64)
    ap.add_argument("--retrain-data-limit", type=int, help="examples per split when retraining (default: --data-limit)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "tnas"))
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.data, args.data_limit, args.epochs = args.seeds[:2], "digits", 128, 2
        args.population, args.generations, args.top_k = 2, 6, 2  # TNAS: 6 scores in training + 2 x 3
        args.tnas_topk, args.tnas_pool, args.tnas_interval = 2, 2, 1
        args.sweep, args.fig2_seeds, args.fig2_n, args.retrain_epochs = [0.0], args.seeds[:1], 1, 1
        args.out = args.out + "_quick"
    return args


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    training, gens = tnas_generations(args)
    spaces = [s for s in SPACES if s in args.spaces.split(",")]
    rows: list[dict[str, Any]] = []
    t0 = time.time()

    def save(**more: Any) -> None:
        write_json_atomic(out / "tnas.json", {"settings": vars(args), "rows": rows, **more})

    def one(space: str, method: str, seed: int, eps: float, main_run: bool) -> None:
        folder = out / space / (f"eps{eps:g}" if method == "tnas" else "baselines")
        row = search(args, space, method, seed, folder, eps_inc=eps)  # no winner (--verify > 0): accuracy None
        rows.append({**row, "main": main_run})
        print(f"{space} seed {seed} {method}{f' eps_inc {eps:g}' if method == 'tnas' else ''}: stand-alone "
              f"{row.get('standalone_accuracy')} ({time.time() - t0:.0f} s so far)", file=sys.stderr, flush=True)
        save()

    for space in spaces:
        for seed in args.seeds:
            for method in METHODS:
                one(space, method, seed, args.tnas_eps_inc, True)
    if "nasbench201" in spaces:
        for eps in [v for v in args.sweep if v != args.tnas_eps_inc]:
            for seed in args.seeds:
                one("nasbench201", "tnas", seed, eps, False)
        for r in rows:
            if r.get("main") and r["space"] == "nasbench201" and r["strategy"] == "tnas":
                rows.append({**r, "main": False})  # the comparison's TNAS is the sweep's row for its ε_inc
    figs = [fig2(args, out, s) for s in args.fig2_seeds] if "nasbench201" in spaces else []
    save(fig2=figs)
    budgets = ", ".join(f"{s} {' '.join(SPACES[s][1])}" for s in spaces)
    print(f"{args.data} <= {args.data_limit} per split, 32 px; budgets {budgets} (predicted); supernet {args.epochs} "
          f"epochs; SPOS/random {args.population} x {args.generations} scores; TNAS {training} in training + "
          f"{args.population} x {gens} evolution (eps_inc {args.tnas_eps_inc:g}, top-k {args.tnas_topk}, pool "
          f"{args.tnas_pool}, interval {args.tnas_interval}); stand-alone {args.retrain_epochs} epochs; seeds "
          f"{' '.join(map(str, args.seeds))}; {time.time() - t0:.0f} s\n")
    print(comparison_table(rows))
    if figs:
        print(f"\nFig. 2 (nasbench201, seeds {' '.join(map(str, args.fig2_seeds))}; {args.fig2_n} per set and seed "
              f"trained stand-alone)\n")
        print(fig2_table(figs))
        print("\nε_inc sweep (nasbench201, Table 4)\n")
        print(sweep_table([r for r in rows if not r.get("main")], sorted(set(args.sweep) | {args.tnas_eps_inc})))


if __name__ == "__main__":
    main()
