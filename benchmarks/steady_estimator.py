"""Which steady-latency estimator? Candidates compared on the SAME interleaved raw samples (issue 15).

Each of ``--processes`` fresh processes (``--gap-s`` seconds apart, so the machine can change state
in between) measures, on ort-cpu with 1 thread:

- **whole models**: ``mobilenet_v2`` and ``--archs - 1`` seeded random ``mobilenetv2`` archs,
  side by side in ``--rounds`` interleaved rounds of ``--runs-per-round`` runs
  (``hwnas.profile.whole_model.measure_archs_side_by_side``, no re-measurement, so every process
  keeps the same number of rounds);
- **their blocks**: every distinct block of those archs, interleaved single runs as the profiler
  times them (``hwnas.profile.profiler.measure_interleaved``), ``rounds x runs_per_round`` each,
  grouped into rounds of ``runs_per_round``.

From the raw runs every candidate estimator is computed: the median of all runs (the old
figure), the min of all runs, the q10 / q25 / q50 of round medians, and the mean of the lowest
third of the round medians. The table printed per resolution and estimator:

- ``repro %``: reproducibility across processes, max / min - 1 of an arch's whole-model figure
  (median over archs; ``worst``: the max);
- ``split %``: within a process, |first half - second half| / mean of the estimator computed on each
  half of the rounds (median over archs and processes): how steady one measurement is;
- ``ratio repro %``: max / min - 1 across processes of an arch's figure divided by
  ``mobilenet_v2``'s (the side-by-side ratio, what relative budgets use);
- ``sum/whole``: the per-block sum over the whole-model figure (median over archs and processes;
  a constant factor is what a calibration absorbs), and ``scatter %``: (max - min) / median of
  that ratio over the archs (what a calibration cannot absorb);
- at 32 px also ``shipped/whole``: ``latency_tables/cpu-ort-1t_r32.json``'s LUT sum (medians)
  over the whole-model figure.

Also the spread of the round medians ((q90 - q10) / q50, estimator-independent). Pick the quantile
with the best reproducibility and agreement and set ``DEFAULT_QUANTILE`` in
``hwnas/profile/steady.py`` (one line); record this table and the machine in RESULTS.md.

    .venv/bin/python benchmarks/steady_estimator.py                       # 32 px, 3 processes a minute apart
    .venv/bin/python benchmarks/steady_estimator.py --resolution 32 --resolution 224 --out est.json
    .venv/bin/python benchmarks/steady_estimator.py --quick               # smoke: 2 rounds, 2 archs, 2 processes

Run it on a quiet machine: it times things.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_R32 = ROOT / "latency_tables" / "cpu-ort-1t_r32.json"
REFERENCE = "mobilenet_v2"


def _low_third(rounds: Sequence[float]) -> float:
    v = np.sort(np.asarray(rounds, dtype=np.float64))
    return float(v[:max(1, len(v) // 3)].mean())


#: Candidate estimators: name -> f(runs grouped by round, ms) -> ms.
ESTIMATORS: dict[str, Callable[[Sequence[Sequence[float]]], float]] = {
    "median of all runs": lambda rs: float(np.median([x for r in rs for x in r])),
    "min of all runs": lambda rs: float(np.min([x for r in rs for x in r])),
    "q10 of round medians": lambda rs: float(np.quantile([np.median(r) for r in rs], 0.10)),
    "q25 of round medians": lambda rs: float(np.quantile([np.median(r) for r in rs], 0.25)),
    "q50 of round medians": lambda rs: float(np.quantile([np.median(r) for r in rs], 0.50)),
    "mean of lowest third": lambda rs: _low_third([float(np.median(r)) for r in rs]),
}


# ---- one process: raw samples ------------------------------------------------------------------

def _archs(space, *, n: int, resolution: int, num_classes: int, seed: int) -> dict[str, dict[str, Any]]:
    from hwnas.latency.validate import VALIDATION_STREAM, sample_archs
    from hwnas.space import ArchSettings

    out = {REFERENCE: space.canonical(space.preset(REFERENCE, resolution=resolution, num_classes=num_classes))}
    settings = ArchSettings(resolution=resolution, width_mult=1.0, num_classes=num_classes)
    for i, a in enumerate(sample_archs(space, n=max(0, n - 1), seed=seed, stream=VALIDATION_STREAM,
                                       settings=settings)):
        out[f"arch{i}"] = a
    return out


def worker(*, resolution: int, n_archs: int, rounds: int, runs_per_round: int, warmup: int, seed: int,
           process: int) -> dict[str, Any]:
    """Raw runs of one process: whole models side by side, and their blocks interleaved."""
    import tempfile

    from hwnas.profile import BackendConfig, SteadySettings, make_backend, measure_archs_side_by_side
    from hwnas.profile.profiler import ProfileSettings, input_shape, measure_interleaved
    from hwnas.space import load_space, make_module, op_key

    space = load_space("mobilenetv2")
    num_classes = 10 if resolution == 32 else 1000
    archs = _archs(space, n=n_archs, resolution=resolution, num_classes=num_classes, seed=seed)
    config = BackendConfig(backend="ort-cpu", threads=1)
    steady = SteadySettings(rounds=rounds, runs_per_round=runs_per_round, warmup=warmup, retries=0,
                            max_spread_pct=1e9)
    t0 = time.time()
    whole = measure_archs_side_by_side(space, archs, config=config, settings=steady, reference=REFERENCE,
                                       seed=seed + process)
    blocks_of = {name: [op_key(b) for b in space.resolve(a)] for name, a in archs.items()}
    blocks = {op_key(b): b for a in archs.values() for b in space.resolve(a) if op_key(b) is not None}
    backend = make_backend(config)
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for i, (k, b) in enumerate(blocks.items()):
                runners[k] = backend.prepare(make_module(b), input_shape(b, 1), workdir=Path(tmp), name=f"b{i}")
            with backend.timing_context():
                samples = measure_interleaved(runners, list(blocks), rng=np.random.default_rng(seed + process),
                                              settings=ProfileSettings(repeats=rounds * runs_per_round,
                                                                       warmup=warmup, remeasure=0))
        finally:
            for r in runners.values():
                r.close()
    return {"resolution": resolution, "process": process, "started": t0, "seconds": time.time() - t0,
            "whole": {k: [list(r) for r in v] for k, v in whole.runs.items()},
            "ratio_per_round": whole.ratio, "blocks": samples, "blocks_of": blocks_of,
            "archs": archs}


# ---- across processes: the table ---------------------------------------------------------------

def _group(samples: Sequence[float], k: int) -> list[list[float]]:
    from hwnas.profile.steady import group_rounds

    return [list(r) for r in group_rounds(samples, runs_per_round=k)]


def _pct(a: float) -> float:
    return 100.0 * a


def summarize(results: list[dict[str, Any]], *, runs_per_round: int) -> list[dict[str, Any]]:
    """One row per (resolution, estimator) from the workers' raw runs."""
    from hwnas.latency import LatencyModel
    from hwnas.profile.steady import spread_pct
    from hwnas.space import load_space

    rows = []
    space = load_space("mobilenetv2")
    shipped = LatencyModel.load(SHIPPED_R32, calibration=False) if SHIPPED_R32.exists() else None
    for res in sorted({r["resolution"] for r in results}):
        procs = [r for r in results if r["resolution"] == res]
        names = list(procs[0]["whole"])
        round_spread = float(np.median([spread_pct([np.median(x) for x in p["whole"][n]]) for p in procs
                                        for n in names]))
        for est, f in ESTIMATORS.items():
            fig = np.array([[f(p["whole"][n]) for n in names] for p in procs])  # processes x archs, ms
            repro = fig.max(axis=0) / fig.min(axis=0) - 1.0
            ratio = fig / fig[:, [names.index(REFERENCE)]]
            ratio_repro = ratio.max(axis=0) / ratio.min(axis=0) - 1.0
            split = []
            for p in procs:
                for n in names:
                    rs = p["whole"][n]
                    h = len(rs) // 2
                    if h >= 1:
                        a, b = f(rs[:h]), f(rs[h:])
                        split.append(abs(a - b) / ((a + b) / 2))
            block_fig = [{k: f(_group(v, runs_per_round)) for k, v in p["blocks"].items()} for p in procs]
            sums = np.array([[sum(bf[k] for k in p["blocks_of"][n] if k is not None) for n in names]
                             for p, bf in zip(procs, block_fig)])
            sw = sums / fig
            row = {"resolution": res, "estimator": est, "processes": len(procs), "archs": len(names),
                   "repro_pct": _pct(float(np.median(repro))), "repro_worst_pct": _pct(float(repro.max())),
                   "split_pct": _pct(float(np.median(split))) if split else None,
                   "ratio_repro_pct": _pct(float(np.median(ratio_repro))),
                   "sum_over_whole": float(np.median(sw)),
                   "sum_scatter_pct": _pct(float(np.median((sw.max(axis=1) - sw.min(axis=1)) / np.median(sw, axis=1)))),
                   "round_spread_pct": round_spread, "shipped_over_whole": None}
            if shipped is not None and res == 32:
                lut = np.array([shipped.predict(procs[0]["archs"][n], space=space).lut_sum_ms for n in names])
                row["shipped_over_whole"] = float(np.median(lut[None, :] / fig))
            rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    def v(x, fmt):
        return "n/a" if x is None else format(x, fmt)

    head = (f"{'px':>4} {'estimator':24} {'repro %':>8} {'worst %':>8} {'split %':>8} {'ratio repro %':>14} "
            f"{'sum/whole':>10} {'scatter %':>10} {'shipped/whole':>14} {'round spread %':>15}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['resolution']:>4} {r['estimator']:24} {v(r['repro_pct'], '8.2f')} "
                     f"{v(r['repro_worst_pct'], '8.2f')} {v(r['split_pct'], '8.2f')} "
                     f"{v(r['ratio_repro_pct'], '14.2f')} {v(r['sum_over_whole'], '10.3f')} "
                     f"{v(r['sum_scatter_pct'], '10.2f')} {v(r['shipped_over_whole'], '14.3f')} "
                     f"{v(r['round_spread_pct'], '15.2f')}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, action="append", choices=[32, 224],
                    help="input resolution (repeatable; default 32)")
    ap.add_argument("--archs", type=int, default=6, help="mobilenet_v2 plus this many - 1 random archs (default 6)")
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds per process (default 30)")
    ap.add_argument("--runs-per-round", type=int, default=5, help="runs per round (default 5)")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up runs (default 5)")
    ap.add_argument("--processes", type=int, default=3, help="fresh processes (default 3)")
    ap.add_argument("--gap-s", type=float, default=60.0, help="seconds between processes (default 60)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2, 2 archs, 2 processes, no gap")
    ap.add_argument("--out", help="write the raw runs and the rows to this JSON file")
    ap.add_argument("--worker", type=int, metavar="PROCESS", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.runs_per_round, args.archs, args.processes, args.gap_s, args.warmup = 2, 2, 2, 2, 0.0, 1
    resolutions = args.resolution or [32]
    kw = dict(n_archs=args.archs, rounds=args.rounds, runs_per_round=args.runs_per_round, warmup=args.warmup,
              seed=args.seed)
    if args.worker is not None:  # a fresh process: raw runs as one JSON object on stdout
        out = [worker(resolution=r, process=args.worker, **kw) for r in resolutions]
        print(json.dumps(out))
        return 0

    results = []
    for p in range(args.processes):
        if p and args.gap_s > 0:
            print(f"waiting {args.gap_s:g} s before process {p + 1} ...", file=sys.stderr)
            time.sleep(args.gap_s)
        print(f"process {p + 1}/{args.processes}: measuring ...", file=sys.stderr)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(p), "--archs", str(args.archs),
               "--rounds", str(args.rounds), "--runs-per-round", str(args.runs_per_round),
               "--warmup", str(args.warmup), "--seed", str(args.seed)]
        for r in resolutions:
            cmd += ["--resolution", str(r)]
        done = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
        results += json.loads(done.stdout)
    rows = summarize(results, runs_per_round=args.runs_per_round)
    print(f"machine: {platform.node()} | {platform.processor() or platform.machine()} | ort-cpu, 1 thread | "
          f"{args.processes} processes {args.gap_s:g} s apart | {args.archs} archs | "
          f"{args.rounds} rounds x {args.runs_per_round} runs")
    print(render(rows))
    if args.out:
        from hwnas.jsonio import write_json_atomic

        write_json_atomic(args.out, {"settings": vars(args), "rows": rows, "raw": results})
        print(f"raw runs and rows: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
