"""Do searches land on the budget? Each strategy × three budgets × two seeds, through the CLI (issue 15).

For every strategy (``spos-evolution``, ``proxyless``, ``msgdas``, ``mnasnet``), every budget
T = FACTOR × the ``mobilenet_v2`` preset's PREDICTED latency (the calibrated prediction ``hwnas arch
show --table`` reports, as the search predicts; factors 0.6, 0.75, 0.9 by default)
and every seed, runs ``hwnas search --json`` on ``mobilenetv2`` at 32 px (digits) with the shipped
table ``latency_tables/cpu-ort-1t_r32.json`` and the strategy's DEFAULT settings (only the run size
is set: ``--epochs``, ``--data-limit``), and prints:

    strategy, seed, T (ms), predicted winner / T, measured winner / T, latency_source

``predicted winner / T`` is the table's prediction of the winner; ``measured winner / T`` reads
``measured_latency_ms`` of ``summary.json`` (measured final selection), ``n/a`` where the summary
has none. Targets (issue 15): predicted winner / T in [0.95, 1.00] for the gradient and RL
strategies; measured winner / T ≤ 1.03 for every strategy.

Resumable: a run whose ``summary.json`` exists is read, not re-run (``--out`` keeps the runs).
The runs time models on the machine's CPU at the end (measured selection), so run it on a quiet
machine and record the table and the machine in ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/budget_hit.py [--epochs 6] [--data-limit 600] [--out benchmarks/out/budget_hit]
    .venv/bin/python benchmarks/budget_hit.py --quick     # smoke: 1 budget, 1 seed, tiny runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = "latency_tables/cpu-ort-1t_r32.json"
SPACE, PRESET = "mobilenetv2", "mobilenet_v2"
STRATEGIES = ("spos-evolution", "proxyless", "msgdas", "mnasnet")
#: Full runs: evolution at the demo's size (population 16, 6 generations; SPOS's own 50 x 20 took ~16 min
#: per run here). Every other strategy keeps its defaults.
FULL_EXTRA = {"spos-evolution": ["--population", "16", "--generations", "6", "--top-k", "4"]}
#: --quick only: keep the smoke short (every other setting stays the strategy's default).
QUICK_EXTRA = {"mnasnet": ["--mnas-steps", "2", "--mnas-archs-per-step", "2"],
               "spos-evolution": ["--generations", "2", "--population", "4", "--top-k", "2"]}


def hwnas(*args: str) -> subprocess.CompletedProcess:
    """``hwnas ARGS... --json`` in the repository root, one thread (its single JSON object on stdout)."""
    exe = Path(sys.executable).parent / "hwnas"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(exe), *args, "--json"], cwd=ROOT, capture_output=True, text=True, env=env)


def reference_ms(table: str) -> float:
    """The ``mobilenet_v2`` preset's predicted latency, ms (the table's own resolution and classes)."""
    with open(ROOT / table) as f:
        device = json.load(f)["device"]
    r = hwnas("arch", "show", "--space", SPACE, "--preset", PRESET, "--table", table,
              "--resolution", str(device["resolution"]), "--num-classes", str(device["num_classes"]))
    if r.returncode != 0:
        raise SystemExit(f"hwnas arch show failed: {r.stderr.strip()}")
    return float(json.loads(r.stdout)["latency_ms"])


def run_one(*, strategy: str, seed: int, budget: float, out: Path, epochs: int, data_limit: int,
            extra: list[str]) -> dict:
    """The summary of one search (read from ``out/summary.json`` when the run is already done)."""
    summary = out / "summary.json"
    if not summary.exists():
        args = ["search", "--space", SPACE, "--strategy", strategy, "--table", TABLE, "--latency-ms", f"{budget:.6g}",
                "--data", "digits", "--data-limit", str(data_limit), "--epochs", str(epochs), "--seed", str(seed),
                "--out", str(out), *extra]
        if (out / "checkpoint.pt").exists():
            args.append("--resume")
        r = hwnas(*args)
        if r.returncode != 0:
            tail = r.stderr.strip().splitlines()[-1:] or ["?"]
            return {"error": f"exit {r.returncode}: {tail[0]}"}
    with open(summary) as f:
        return json.load(f)


def ratio(value, budget: float) -> str:
    return "n/a" if value is None else f"{float(value) / budget:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--factors", nargs="+", type=float, default=[0.6, 0.75, 0.9],
                    help="budgets as fractions of mobilenet_v2's predicted latency")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=6, help="--epochs of every search")
    ap.add_argument("--data-limit", type=int, default=600, help="--data-limit of every search")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "budget_hit"), help="run directories")
    ap.add_argument("--quick", action="store_true",
                    help="smoke: the first factor and seed only, 1 epoch, 128 examples, 2 controller steps")
    ap.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    a = ap.parse_args()
    factors, seeds, epochs, limit = a.factors, a.seeds, a.epochs, a.data_limit
    if a.quick:
        factors, seeds, epochs, limit = factors[:1], seeds[:1], 1, 128
    ref = reference_ms(TABLE)
    rows = []
    for strategy in a.strategies:
        extra = (QUICK_EXTRA if a.quick else FULL_EXTRA).get(strategy, [])
        for factor in factors:
            budget = factor * ref  # ms, predicted
            for seed in seeds:
                out = Path(a.out) / ("quick" if a.quick else "full") / f"{strategy}_f{factor:g}_s{seed}"
                s = run_one(strategy=strategy, seed=seed, budget=budget, out=out, epochs=epochs, data_limit=limit,
                            extra=extra)
                rows.append({"strategy": strategy, "seed": seed, "factor": factor, "budget_ms": budget,
                             "predicted_ratio": None if "error" in s else s["predicted_latency_ms"] / budget,
                             "measured_ratio": (None if s.get("measured_latency_ms") is None
                                                else s["measured_latency_ms"] / budget),
                             "latency_source": s.get("latency_source", "n/a"), "error": s.get("error")})
                print(f"done {strategy} f={factor:g} seed={seed}", file=sys.stderr)
    if a.json:
        print(json.dumps({"reference_ms": ref, "reference": PRESET, "table": TABLE, "rows": rows}))
        return 0
    print(f"reference: {PRESET} predicted {ref:.4f} ms ({TABLE}); runs: {a.out}")
    print(f"{'strategy':<16}{'seed':>5}{'T ms':>9}{'pred/T':>9}{'meas/T':>9}  latency_source")
    for r in rows:
        pred = "error" if r["error"] else ratio(r["predicted_ratio"], 1.0)
        print(f"{r['strategy']:<16}{r['seed']:>5}{r['budget_ms']:>9.4f}{pred:>9}{ratio(r['measured_ratio'], 1.0):>9}"
              f"  {r['latency_source']}" + (f"  ({r['error']})" if r["error"] else ""))
    gd = [r for r in rows if r["strategy"] != "spos-evolution" and r["predicted_ratio"] is not None]
    hit = sum(0.95 <= r["predicted_ratio"] <= 1.0 for r in gd)
    print(f"predicted winner in [0.95, 1.00]·T (gradient and RL strategies): {hit}/{len(gd)}")
    meas = [r for r in rows if r["measured_ratio"] is not None]
    if meas:
        print(f"measured winner <= 1.03·T: {sum(r['measured_ratio'] <= 1.03 for r in meas)}/{len(meas)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
