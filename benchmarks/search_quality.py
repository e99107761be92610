"""Search strategies compared by their winners' stand-alone accuracy (issue 16, item 5).

Per seed, every strategy (``spos-evolution``, ``random``, ``proxyless``, ``msgdas``, ``mnasnet``, and
issue 19's ``nasp``, ``darts-1`` and ``darts-2`` (``--strategy darts --darts-order 1|2``) and ``gdas``)
runs through ``hwnas search`` under one latency budget, and its winner is then trained from
scratch with ``hwnas train``: one fixed, seeded short recipe for all winners of a seed (identical
winners share one run). Strategies are ranked by that stand-alone accuracy, not by the supernet
accuracy the search itself reports, and each is compared with random search over the same seeds
(paired mean difference, paired t-test) -- the comparison Yu et al. (ICLR 2020, "Evaluating the
search phase of neural architecture search") ask for: a search method is only shown to work if it
beats random search once the winners are trained stand-alone. Evolution and random search score
the same number of candidates (``--population`` x ``--generations``); mnasnet's default budget
(``--mnas-steps`` x ``--mnas-archs-per-step``) matches it; proxyless and msgdas are bounded by
``--epochs``. Each search ends with its own measured selection (``--verify`` candidates timed side
by side with the reference); a search none of whose verified candidates fits measured has no
winner: its row says so, counts as over budget, and leaves that seed out of its paired comparison.

Outputs: ``OUT/seed<s>/<strategy>/`` (search run folders), ``OUT/seed<s>/retrain/<key>/``
(stand-alone runs, keyed by architecture and recipe), ``OUT/search_quality.json`` (every row,
the per-strategy summary and the paired comparison; rewritten atomically after each run). A
re-run with the same settings resumes: finished runs are read back, stopped ones continue.
Markdown tables go to stdout, progress to stderr.

Needs Fashion-MNIST for the default ``--data`` (Debian package ``dataset-fashion-mnist``, read
from /usr/share/datasets/fashion-mnist) and the measured table named by ``--table``. The
p-values use ``scipy.stats`` (installed with scikit-learn, a dependency of hwnas).

Usage:
  python benchmarks/search_quality.py --seeds 0 1 2 3 4 --strategies spos-evolution,random,mnasnet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from hwnas.jsonio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
#: The CLI of this interpreter's environment (``.venv/bin/hwnas`` when run with ``.venv/bin/python``).
HWNAS = [str(Path(sys.executable).parent / "hwnas")]
STRATEGIES = ("spos-evolution", "random", "proxyless", "msgdas", "mnasnet", "nasp", "darts-1", "darts-2", "gdas")
#: Rows that are one strategy with fixed flags: name → (``--strategy``, flags).
VARIANTS = {"darts-1": ("darts", ["--darts-order", "1"]), "darts-2": ("darts", ["--darts-order", "2"])}
BASELINE = "random"
#: A row's per-winner fields (None in the row of a search without a winner).
ROW_FIELDS = ("standalone_accuracy", "search_accuracy", "evaluated", "budget_ms", "predicted_ms", "measured_ms",
              "measured_ratio_to_budget", "search_seconds", "retrain_seconds", "retrain_out", "arch")
#: How ``hwnas search`` reports a search none of whose verified candidates fits the budget measured.
NO_FIT = "hwnas: failed: NoCandidateFits: "


class NoFit(Exception):
    """A search ended without a winner: every verified candidate missed the budget measured."""


def _hwnas(cmd: list[str], folder: Path) -> dict[str, Any]:
    """Runs one ``hwnas`` command (``--resume`` when ``folder`` holds a run); its JSON report.

    Raises:
        NoFit: the search found no candidate within budget measured (any other failure stops the benchmark).
    """
    if (folder / "config.json").exists():
        cmd = [*cmd, "--resume"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode == 0:
        return json.loads(proc.stdout)
    no_fit = [line[len(NO_FIT):] for line in proc.stderr.splitlines() if line.startswith(NO_FIT)]
    if no_fit:
        raise NoFit(no_fit[-1])
    raise SystemExit(f"{shlex.join(cmd)}\nfailed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def search_cmd(strategy: str, seed: int, args: argparse.Namespace, folder: Path) -> list[str]:
    """The ``hwnas search`` command of one strategy and seed."""
    budget = ["--latency-ms", str(args.latency_ms)] if args.latency_ms is not None else ["--latency-rel",
                                                                                       args.latency_rel]
    name, flags = VARIANTS.get(strategy, (strategy, []))
    cmd = [*HWNAS, "search", "--space", args.space, "--strategy", name, *flags, "--table", args.table, *budget,
           "--data", args.data, "--data-limit", str(args.data_limit), "--epochs", str(args.epochs),
           "--seed", str(seed), "--verify", str(args.verify), "--out", str(folder), "--json"]
    if strategy in ("spos-evolution", "random"):
        cmd += ["--population", str(args.population), "--generations", str(args.generations),
                "--top-k", str(args.top_k)]
    elif strategy == "mnasnet":
        cmd += ["--mnas-steps", str(args.mnas_steps), "--mnas-archs-per-step", str(args.mnas_archs_per_step)]
    return [*cmd, *shlex.split(args.search_args)]


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The stand-alone training recipe shared by every winner (the seed is the search's)."""
    return {"data": args.data, "data_limit": args.retrain_data_limit or args.data_limit,
            "epochs": args.retrain_epochs, "batch_size": args.retrain_batch_size, "lr": args.retrain_lr}


def retrain(arch_file: Path, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Trains one winner stand-alone with the shared recipe (one run per architecture and recipe)."""
    r = recipe(args)
    key = hashlib.sha256(json.dumps([json.loads(arch_file.read_text()), r], sort_keys=True).encode()).hexdigest()
    folder = out / f"seed{seed}" / "retrain" / key[:12]
    cmd = [*HWNAS, "train", "--space", args.space, "--arch", str(arch_file), "--data", r["data"],
           "--data-limit", str(r["data_limit"]), "--epochs", str(r["epochs"]), "--batch-size", str(r["batch_size"]),
           "--lr", str(r["lr"]), "--seed", str(seed), "--out", str(folder), "--no-progress", "--json"]
    return _hwnas(cmd, folder)


def ratio_to_budget(s: dict[str, Any]) -> float | None:
    """The winner's measured latency over the budget (side by side with the reference when relative)."""
    if s.get("measured_latency_ms") is None:
        return None
    if s.get("budget_factor") is not None:
        return s["measured_ratio"] / s["budget_factor"]
    return s["measured_latency_ms"] / s["latency_budget_ms"]


def run_one(strategy: str, seed: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Search with one strategy and seed, then retrain its winner; the benchmark's row.

    A search whose verified candidates all miss the budget measured has no winner: its row keeps the
    message, no accuracy, and ``constraints_met`` False (a re-run measures it again). Seconds: the
    search's own (from its summary) and the retrain's epochs, so cached runs keep their cost;
    ``wall_seconds`` is this invocation's.
    """
    folder = out / f"seed{seed}" / strategy
    t0 = time.time()
    row: dict[str, Any] = {"seed": seed, "strategy": strategy, "search_out": str(folder)}
    try:
        s = _hwnas(search_cmd(strategy, seed, args, folder), folder)
    except NoFit as exc:
        return {**row, **dict.fromkeys(ROW_FIELDS), "constraints_met": False, "no_fit": str(exc),
                "wall_seconds": round(time.time() - t0, 1)}
    t = retrain(folder / "best_arch.json", seed, args, out)
    return {**row, "standalone_accuracy": t["accuracy"], "search_accuracy": s["accuracy"],
            "evaluated": s["evaluated"], "budget_ms": s["latency_budget_ms"], "predicted_ms": s["predicted_latency_ms"],
            "measured_ms": s.get("measured_latency_ms"), "measured_ratio_to_budget": ratio_to_budget(s),
            "constraints_met": s["constraints_met"], "no_fit": None, "search_seconds": s["seconds"],
            "retrain_seconds": round(sum(h["seconds"] for h in t["history"]), 1),
            "wall_seconds": round(time.time() - t0, 1), "retrain_out": t["out"], "arch": s["arch"]}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarize(rows: list[dict[str, Any]], strategy: str) -> dict[str, Any]:
    """Stand-alone accuracy over seeds (mean, std, standard error) and the winners' latency."""
    mine = [r for r in rows if r["strategy"] == strategy]
    acc = np.array([r["standalone_accuracy"] for r in mine if r["standalone_accuracy"] is not None])
    std = float(acc.std(ddof=1)) if len(acc) > 1 else None
    return {"strategy": strategy, "runs": len(mine), "n": len(acc), "mean": float(acc.mean()) if len(acc) else None,
            "std": std, "se": std / math.sqrt(len(acc)) if std is not None else None,
            "search_accuracy_mean": _mean([r["search_accuracy"] for r in mine]),
            "predicted_ms_mean": _mean([r["predicted_ms"] for r in mine]),
            "measured_ratio_mean": _mean([r["measured_ratio_to_budget"] for r in mine]),
            "within_budget": sum(bool(r["constraints_met"]) for r in mine),
            "search_seconds_mean": _mean([r["search_seconds"] for r in mine]),
            "retrain_seconds_mean": _mean([r["retrain_seconds"] for r in mine])}


def paired_t(diffs: np.ndarray) -> tuple[float | None, float | None]:
    """Paired t statistic of per-seed differences and its two-sided p-value (df = n - 1)."""
    n = len(diffs)
    if n < 2:
        return None, None
    mean, sd = float(diffs.mean()), float(diffs.std(ddof=1))
    if sd == 0.0:
        return (None, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    return t, float(2.0 * stats.t.sf(abs(t), df=n - 1))


def compare(rows: list[dict[str, Any]], strategy: str) -> dict[str, Any] | None:
    """``strategy`` minus random search on the seeds where both have a winner: mean difference, SE, t, p."""
    acc = {(r["strategy"], r["seed"]): r["standalone_accuracy"] for r in rows
           if r["standalone_accuracy"] is not None}
    seeds = sorted(s for (name, s) in acc if name == strategy and (BASELINE, s) in acc)
    if not seeds:
        return None
    diffs = np.array([acc[strategy, s] - acc[BASELINE, s] for s in seeds])
    t, p = paired_t(diffs)
    se = float(diffs.std(ddof=1)) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    return {"strategy": strategy, "seeds": seeds, "mean_diff": float(diffs.mean()), "se_diff": se, "t": t, "p": p,
            "wins": int((diffs > 0).sum()), "ties": int((diffs == 0).sum())}


def _f(v: float | None, spec: str, scale: float = 1.0) -> str:
    return "n/a" if v is None else format(scale * v, spec)


def report(summaries: list[dict[str, Any]], comparisons: list[dict[str, Any]]) -> str:
    """The two markdown tables and the evolution-vs-random verdict."""
    lines = ["| strategy | winners / seeds | stand-alone acc % (mean ± std) | SE | supernet acc % | pred ms | "
             "measured / budget | within budget | search s | retrain s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        cells = [s["strategy"], f"{s['n']}/{s['runs']}", f"{_f(s['mean'], '.2f', 100)} ± {_f(s['std'], '.2f', 100)}",
                 _f(s["se"], ".2f", 100), _f(s["search_accuracy_mean"], ".2f", 100), _f(s["predicted_ms_mean"], ".4f"),
                 _f(s["measured_ratio_mean"], ".3f"), f"{s['within_budget']}/{s['runs']}",
                 _f(s["search_seconds_mean"], ".0f"), _f(s["retrain_seconds_mean"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    if not comparisons:
        return "\n".join([*lines, "", f"no paired comparison: no seed where {BASELINE} and another strategy "
                                       "both have a winner"])
    lines += ["", f"| strategy vs {BASELINE} | paired seeds | mean diff (pp) | SE (pp) | t | p (two-sided) | "
                  "wins / ties |", "|---|---:|---:|---:|---:|---:|---:|"]
    for c in comparisons:
        lines.append(f"| {c['strategy']} | {len(c['seeds'])} | {_f(c['mean_diff'], '+.2f', 100)} | "
                     f"{_f(c['se_diff'], '.2f', 100)} | {_f(c['t'], '.2f')} | {_f(c['p'], '.3f')} | "
                     f"{c['wins']} / {c['ties']} |")
    evo = next((c for c in comparisons if c["strategy"] == "spos-evolution"), None)
    if evo is not None:
        beats = evo["se_diff"] is not None and evo["mean_diff"] > evo["se_diff"]
        lines += ["", f"evolution beats random by more than the seeds' standard error: {'yes' if beats else 'no'}"]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help="comma-separated subset of " + ", ".join(STRATEGIES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--space", default="mobilenetv2")
    ap.add_argument("--table", default="latency_tables/cpu-ort-1t_r32.json")
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--latency-rel", default="mobilenet_v2:0.8", metavar="REF:FACTOR")
    budget.add_argument("--latency-ms", type=float)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-limit", type=int, default=1000, help="examples per split (search and retrain)")
    ap.add_argument("--epochs", type=int, default=4, help="supernet training epochs of every search")
    ap.add_argument("--verify", type=int, default=3, help="candidates timed at the end of each search (0: off)")
    ap.add_argument("--population", type=int, default=8, help="evolution and random: candidates per generation")
    ap.add_argument("--generations", type=int, default=4, help="evolution and random: generations")
    ap.add_argument("--top-k", type=int, default=3, help="evolution: parents kept")
    ap.add_argument("--mnas-steps", type=int, default=8, help="mnasnet: controller steps")
    ap.add_argument("--mnas-archs-per-step", type=int, default=4, help="mnasnet: models sampled per step")
    ap.add_argument("--search-args", default="", help="more `hwnas search` flags for every run, one quoted string")
    ap.add_argument("--retrain-epochs", type=int, default=4, help="stand-alone epochs of every winner")
    ap.add_argument("--retrain-lr", type=float, default=0.05, help="stand-alone peak learning rate (cosine)")
    ap.add_argument("--retrain-batch-size", type=int, default=64, help="stand-alone batch size")
    ap.add_argument("--retrain-data-limit", type=int, help="examples per split when retraining (default: --data-limit)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "search_quality"))
    args = ap.parse_args()
    if args.latency_ms is not None:
        args.latency_rel = None
    unknown = set(args.strategies.split(",")) - set(STRATEGIES)
    if unknown:
        ap.error(f"unknown strategies {sorted(unknown)} (known: {', '.join(STRATEGIES)})")
    return args


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    strategies = [s for s in STRATEGIES if s in args.strategies.split(",")]
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for seed in args.seeds:
        for strategy in strategies:
            rows.append(run_one(strategy, seed, args, out))
            r = rows[-1]
            acc = "no fit" if r["no_fit"] else _f(r["standalone_accuracy"], ".2f", 100) + "%"
            print(f"seed {seed} {strategy}: stand-alone {acc} ({r['wall_seconds']:.0f} s)", file=sys.stderr,
                  flush=True)
            write_json_atomic(out / "search_quality.json", {"settings": vars(args), "recipe": recipe(args),
                                                            "rows": rows})
    summaries = [summarize(rows, s) for s in strategies]
    comparisons = [c for s in strategies if s != BASELINE and (c := compare(rows, s)) is not None]
    write_json_atomic(out / "search_quality.json", {"settings": vars(args), "recipe": recipe(args), "rows": rows,
                                                    "summary": summaries, "vs_random": comparisons})
    budget = f"{args.latency_ms} ms" if args.latency_ms is not None else args.latency_rel
    print(f"{args.space}, budget {budget} ({args.table}), {args.data} ≤{args.data_limit} per split, supernet "
          f"{args.epochs} epochs, stand-alone {args.retrain_epochs} epochs (lr {args.retrain_lr}, batch "
          f"{args.retrain_batch_size}), seeds {' '.join(map(str, args.seeds))}; {time.time() - t0:.0f} s")
    print(report(summaries, comparisons))


if __name__ == "__main__":
    main()
