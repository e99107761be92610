"""MnasNet's RL controller under two latency budgets vs random search at the same number of samples (issue 9).

One weight-sharing supernet is trained (SPOS uniform single paths) on the weight split; it gives
ACC(m) of every sampled model (inherited weights, BatchNorm recalibrated, architecture split) and
LAT(m) comes from the latency model of a measured table. Then, for each budget T, the ``mnasnet``
strategy (LSTM controller, policy gradient on ``ACC · (LAT/T)^w``, Tan et al. 2019, Eq. 2) and the
``random`` strategy (uniform draws among models with predicted LAT ≤ T) each score
``steps × archs-per-step`` sampled models with that same supernet. The script reports

* whether the controller's mean reward rises (first vs last quarter of the controller steps);
* how the sampled models' latency distribution moves relative to T (mean, median, share ≤ T,
  mean |LAT − T| / T; first vs last quarter);
* the winner of each strategy: predicted latency, accuracy on the architecture split (what the
  search maximized), accuracy on the held-out split with inherited weights (not seen by the
  search), and its measured end-to-end latency with the table's own backend settings.

Outputs ``OUT/results.json``, ``OUT/mnasnet_reward.png`` and a markdown table on stdout. Every run
is resumable: run the same command again after an interruption (the supernet and each strategy run
continue from their checkpoints under ``OUT``).

    .venv/bin/python benchmarks/mnasnet_reward.py --table latency_tables/cpu-ort-1t_r32.json \\
        --out runs/bench-mnasnet-reward
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwnas.jsonio import read_json, write_json_atomic  # noqa: E402
from hwnas.latency.batch import BatchPredictor  # noqa: E402
from hwnas.latency.model import LatencyModel  # noqa: E402
from hwnas.latency.table import LatencyTable  # noqa: E402
from hwnas.search.controller import ControllerConfig  # noqa: E402
from hwnas.search.objective import MNAS_REWARDS, Constraints  # noqa: E402
from hwnas.search.strategies.base import Costs, SearchContext  # noqa: E402
from hwnas.search.strategies.evolution import EvolutionConfig  # noqa: E402
from hwnas.search.strategies.mnasnet import MnasNet, proxy_accuracy  # noqa: E402
from hwnas.search.strategies.spos import RandomSearch  # noqa: E402
from hwnas.space.arch import ArchSettings  # noqa: E402
from hwnas.space.build import build_model  # noqa: E402
from hwnas.space.loader import load_space  # noqa: E402
from hwnas.supernet.evaluator import SupernetEvaluator  # noqa: E402
from hwnas.supernet.samplers import uniform_paths  # noqa: E402
from hwnas.supernet.supernet import SuperNet  # noqa: E402
from hwnas.supernet.training import SupernetTrainConfig, train_supernet  # noqa: E402
from hwnas.train.data import load_dataset  # noqa: E402
from hwnas.train.runs import RunDir  # noqa: E402


def _run_dir(path: Path, config: dict[str, Any]) -> tuple[RunDir, dict[str, Any] | None]:
    resume = (path / "config.json").exists()
    run = RunDir(path, config=config, resume=resume)
    return run, (run.load_checkpoint() if resume else None)


def _window(records: list[dict[str, Any]], target: float) -> dict[str, float]:
    lat = np.array([r["latency_ms"] for r in records])  # ms, predicted
    return {"mean_reward": float(np.mean([r["reward"] for r in records])),
            "mean_latency_ms": float(lat.mean()), "median_latency_ms": float(np.median(lat)),
            "share_within_budget": float(np.mean(lat <= target)),
            "mean_abs_gap_pct": float(np.mean(np.abs(lat - target)) / target * 100)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default=str(ROOT / "latency_tables" / "cpu-ort-1t_r32.json"))
    # mobilenetv2: its entangled supernet reaches 97% training accuracy on digits in 30 epochs; the
    # mnasnet space's (42 decisions incl. per-block op, SE, width, depth) stayed at chance (RESULTS.md)
    p.add_argument("--space", default="mobilenetv2")
    p.add_argument("--data", default="digits")
    p.add_argument("--data-limit", type=int, default=None, help="examples per split (default: all)")
    p.add_argument("--budgets", type=float, nargs="+", default=None,
                   help="latency budgets T, ms (default: the 20th and 50th percentiles of uniformly sampled "
                        "models' predicted latency)")
    p.add_argument("--epochs", type=int, default=30, help="supernet training epochs")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="supernet SGD learning rate")
    p.add_argument("--bn-batches", type=int, default=2)
    p.add_argument("--steps", type=int, default=50, help="controller steps")
    p.add_argument("--archs-per-step", type=int, default=8)
    p.add_argument("--reward", choices=sorted(MNAS_REWARDS), default="hard",
                   help="hard (default; alpha = 0, beta = -1) or soft (alpha = beta = -0.07, under which T only "
                        "rescales the reward, so both budgets search alike)")
    p.add_argument("--ppo", action="store_true", help="PPO instead of REINFORCE")
    p.add_argument("--controller-lr", type=float, default=None)
    p.add_argument("--accuracy", choices=["supernet", "proxy"], default="supernet",
                   help="ACC(m): the supernet (default) or proxy training of every scored model from scratch")
    p.add_argument("--proxy-epochs", type=int, default=5, help="--accuracy proxy: epochs per model")
    p.add_argument("--weight-sharing", choices=["separate", "entangled"], default="entangled",
                   help="supernet candidates (entangled trains in CPU-sized runs; see hwnas.supernet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measure", action=argparse.BooleanOptionalAction, default=True,
                   help="measure the winners end to end with the table's backend")
    p.add_argument("--out", default="runs/bench-mnasnet-reward")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()

    out = Path(args.out)
    space = load_space(args.space)
    table = LatencyTable.load(args.table)
    model = LatencyModel.load(args.table)
    res = int(table.device.get("resolution") or space.spec.resolution)
    wm = float(table.device.get("width_mult") or 1.0)
    ds = load_dataset(args.data, seed=args.seed, limit=args.data_limit)
    settings = {"resolution": res, "width_mult": wm, "num_classes": ds.num_classes}
    predictor = BatchPredictor.build(model, space, **settings)
    costs = Costs(latency=predictor.latency, flops=predictor.flops, params=predictor.params)
    rng = np.random.default_rng([args.seed, 99])
    uniform = predictor.latency(np.stack([space.encode(space.sample(rng)) for _ in range(4000)]))  # ms
    budgets = args.budgets or [round(float(np.percentile(uniform, q)), 4) for q in (20, 50)]

    # ---- one supernet for everything (or proxy training of each model) ----
    train = SupernetTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    base = {"table": args.table, "space": args.space, "data": args.data, "data_limit": args.data_limit,
            "seed": args.seed, "accuracy": args.accuracy, **settings}
    torch.manual_seed(args.seed)
    supernet = SuperNet(space, **settings, sharing=args.weight_sharing).to(memory_format=torch.channels_last)
    if args.accuracy == "supernet":
        run, state = _run_dir(out / "supernet", {**base, "train": train.to_json()})
        train_supernet(supernet, ds, uniform_paths(space), config=train, seed=args.seed, run=run, state=state)
        supernet.eval()
        arch_eval = SupernetEvaluator(supernet, ds, bn_batches=args.bn_batches, seed=args.seed)
        val_eval = SupernetEvaluator(supernet, ds, bn_batches=args.bn_batches, seed=args.seed, split=ds.val)
        score, val_score = arch_eval.score, val_eval.score
    else:
        base["proxy_epochs"] = args.proxy_epochs
        cache: dict[tuple[int, ...], float] = {}

        def score(idx) -> float:
            key = tuple(int(v) for v in idx)
            if key not in cache:
                arch = space.canonical(space.decode(key, **settings))
                cache[key] = proxy_accuracy(space, arch, ds, epochs=args.proxy_epochs, batch_size=args.batch_size,
                                            lr=args.lr, weight_decay=train.weight_decay, seed=args.seed)
            return cache[key]

        val_score = None
    # ACC of uniformly sampled models: is the accuracy signal informative at all?
    probe = [score(space.encode(space.sample(np.random.default_rng([args.seed, 98, i])))) for i in range(16)]

    alpha, beta = MNAS_REWARDS[args.reward]
    lr = args.controller_lr or (2e-3 if args.ppo else ControllerConfig.lr)
    mnas = MnasNet(controller=ControllerConfig(ppo=args.ppo, lr=lr), steps=args.steps,
                   archs_per_step=args.archs_per_step, alpha=alpha, beta=beta, accuracy=args.accuracy,
                   proxy_epochs=args.proxy_epochs)
    rand = RandomSearch(evolution=EvolutionConfig(population=args.archs_per_step, generations=args.steps,
                                                  top_k=min(args.archs_per_step, 10)))

    def search(strategy, budget: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        path = out / f"{strategy.name}_T{budget:g}"
        if (path / "result.json").exists():
            done = read_json(path / "result.json", what="benchmark result")
            return done, RunDir(path, config=read_json(path / "config.json", what="config"), resume=True).history()
        run, state = _run_dir(path, {**base, "strategy": strategy.name, "budget_ms": budget,
                                     "settings": strategy.settings()})
        ctx = SearchContext(space=space, constraints=Constraints(latency_ms=budget), costs=costs, seed=args.seed,
                            run=run, state=state, train_weights=lambda sampler: None, score=score,
                            budgets=(budget,), settings=ArchSettings(**settings), predictor=predictor, table=table,
                            dataset=ds, train_config=train, supernet=supernet, supernet_state=dict,
                            forget_scores=lambda: None,
                            score_many=lambda pool: [score(idx) for idx in pool])
        result = strategy.search(ctx)
        best = [int(v) for v in result.best]
        lat, flops, params = (float(v[0]) for v in costs.all(np.asarray([best])))
        row = {"strategy": strategy.name, "budget_ms": budget, "indices": best, "predicted_latency_ms": lat,
               "flops": flops, "params": params, "arch_accuracy": result.score,
               "val_accuracy": None if val_score is None else val_score(best),
               "sampled": int(result.extra.get("sampled", len(result.candidates))),
               "distinct_scored": len(result.candidates), "extra": result.extra}
        if args.measure:
            from hwnas.profile.backend import BackendConfig
            from hwnas.profile.measure import measure_module

            cfg = BackendConfig.from_header(table.device, commands=None)
            torch.manual_seed(0)
            net = build_model(space.resolve(space.decode(best, **settings))).eval()
            row["measured_latency_ms"] = measure_module(net, input_shape=(cfg.batch, 3, res, res), config=cfg,
                                                        repeats=50, warmup=10)["median_ms"]
        write_json_atomic(path / "result.json", row)
        return row, run.history()

    report: dict[str, Any] = {"table": args.table, "device": table.device.get("name"), "space": args.space,
                              "data": args.data, "settings": settings, "epochs": args.epochs, "steps": args.steps,
                              "archs_per_step": args.archs_per_step, "reward": args.reward, "ppo": args.ppo,
                              "seed": args.seed, "accuracy": args.accuracy, "uniform_latency_pct":
                                  {q: float(np.percentile(uniform, q)) for q in (10, 20, 50, 80, 90)},
                              "uniform_accuracy": {"mean": float(np.mean(probe)), "std": float(np.std(probe)),
                                                   "min": float(np.min(probe)), "max": float(np.max(probe)),
                                                   "chance": 1.0 / ds.num_classes},
                              "budgets": []}
    curves = {}
    for budget in budgets:
        m_row, history = search(mnas, budget)
        r_row, _ = search(rand, budget)
        steps = [h for h in history if h.get("phase") == "mnasnet"]
        q = max(1, len(steps) // 4)
        first = [s for h in steps[:q] for s in h["samples"]]
        last = [s for h in steps[-q:] for s in h["samples"]]
        curves[budget] = steps
        report["budgets"].append({"budget_ms": budget, "first_quarter": _window(first, budget),
                                  "last_quarter": _window(last, budget), "mnasnet": m_row, "random": r_row})
    report["seconds"] = round(time.time() - t0, 1)
    write_json_atomic(out / "results.json", report)
    _plot(curves, report, out / "mnasnet_reward.png")
    print(_markdown(report))
    return 0


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"{report['space']} on {report['data']}, table {Path(report['table']).name} "
             f"({report['settings']['resolution']}px, width {report['settings']['width_mult']}), reward "
             f"{report['reward']}{' PPO' if report['ppo'] else ' REINFORCE'}, {report['steps']} steps x "
             f"{report['archs_per_step']} models, ACC from "
             + (f"the supernet ({report['epochs']} epochs)" if report["accuracy"] == "supernet" else "proxy training")
             + f", seed {report['seed']}", "",
             "ACC of 16 uniformly sampled models: mean {mean:.3f}, std {std:.3f}, range {min:.3f}-{max:.3f} "
             "(chance {chance:.3f})".format(**report["uniform_accuracy"]), ""]
    if report["uniform_accuracy"]["max"] < 2 * report["uniform_accuracy"]["chance"]:
        lines += ["**WARNING: the accuracy signal is at chance level; the comparison below says nothing about "
                  "accuracy.**", ""]
    lines += ["| T (ms) | mean reward (first → last quarter) | mean latency ms | median latency ms | "
             "share ≤ T | mean abs gap to T |", "|---|---|---|---|---|---|"]
    for b in report["budgets"]:
        f, la = b["first_quarter"], b["last_quarter"]
        lines.append(f"| {b['budget_ms']:g} | {f['mean_reward']:.4f} → {la['mean_reward']:.4f} | "
                     f"{f['mean_latency_ms']:.3f} → {la['mean_latency_ms']:.3f} | "
                     f"{f['median_latency_ms']:.3f} → {la['median_latency_ms']:.3f} | "
                     f"{100 * f['share_within_budget']:.0f}% → {100 * la['share_within_budget']:.0f}% | "
                     f"{f['mean_abs_gap_pct']:.1f}% → {la['mean_abs_gap_pct']:.1f}% |")
    lines += ["", "| T (ms) | strategy | sampled (distinct scored) | predicted ms | measured ms | acc arch split "
                  "| acc held-out |", "|---|---|---|---|---|---|---|"]
    for b in report["budgets"]:
        for name in ("mnasnet", "random"):
            r = b[name]
            meas = r.get("measured_latency_ms")
            val = "—" if r["val_accuracy"] is None else f"{100 * r['val_accuracy']:.2f}%"
            lines.append(f"| {b['budget_ms']:g} | {name} | {r['sampled']} ({r['distinct_scored']}) | "
                         f"{r['predicted_latency_ms']:.3f} | "
                         f"{'—' if meas is None else f'{meas:.3f}'} | {100 * r['arch_accuracy']:.2f}% | {val} |")
    lines.append(f"\n{report['seconds']:.0f} s in all")
    return "\n".join(lines)


def _plot(curves: dict[float, list[dict[str, Any]]], report: dict[str, Any], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwnas.jsonio import atomic_write_bytes

    n = len(curves)
    fig, axes = plt.subplots(3, n, figsize=(5.5 * n, 10), squeeze=False)
    for col, (budget, steps) in enumerate(curves.items()):
        x = [h["step"] for h in steps]
        ax = axes[0][col]
        ax.plot(x, [h["mean_reward"] for h in steps], label="mean reward")
        ax.plot(x, [h["baseline"] for h in steps], linestyle="--", label="baseline (EMA)")
        ax.set_title(f"T = {budget:g} ms")
        ax.set_xlabel("controller step")
        ax.set_ylabel("reward")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[1][col]
        lat = [np.array([s["latency_ms"] for s in h["samples"]]) for h in steps]
        ax.fill_between(x, [np.percentile(v, 10) for v in lat], [np.percentile(v, 90) for v in lat], alpha=0.3,
                        label="10-90th percentile")
        ax.plot(x, [np.median(v) for v in lat], label="median")
        ax.axhline(budget, color="tab:red", linestyle="--", label="T")
        ax.set_xlabel("controller step")
        ax.set_ylabel("sampled models' predicted latency (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[2][col]
        q = max(1, len(steps) // 4)
        first = [s["latency_ms"] for h in steps[:q] for s in h["samples"]]
        last = [s["latency_ms"] for h in steps[-q:] for s in h["samples"]]
        bins = np.linspace(min(first + last), max(first + last), 30)
        ax.hist(first, bins=bins, alpha=0.5, label="first quarter of steps")
        ax.hist(last, bins=bins, alpha=0.5, label="last quarter of steps")
        ax.axvline(budget, color="tab:red", linestyle="--", label="T")
        b = next(r for r in report["budgets"] if r["budget_ms"] == budget)
        for name, marker in (("mnasnet", "*"), ("random", "o")):
            ax.plot([b[name]["predicted_latency_ms"]], [0], marker=marker, markersize=12, linestyle="none",
                    label=f"{name} winner")
        ax.set_xlabel("predicted latency (ms)")
        ax.set_ylabel("sampled models")
        ax.legend(fontsize=8)
    fig.suptitle(f"MnasNet controller on {report['space']} ({report['data']}), reward {report['reward']}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


if __name__ == "__main__":
    sys.exit(main())
