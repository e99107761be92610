"""Device adaptation from whole-model timings (issue 18): how well does ``hwnas latency fit`` predict
the latency of unseen archs from n = 10, 20, 50 timed ones?

Phase ``measure`` (resumable, run it alone on the machine): for each case, 300 archs picked by
``hwnas latency measure`` (stratified over the predicted latency, covering every op option) are
exported and timed end to end with ONNX Runtime, 1 thread, all 300 side by side in the same
interleaved rounds (``--chunk 300``), so machine-state drift hits them alike. It also profiles the
prior tables of "another device": PyTorch eager (``torch-cpu``) on this CPU, whose per-op costs
differ from ONNX Runtime's (per-call overhead, kernels).

Phase ``report``: first the starting point, the shipped per-op table profiled block by block on
this CPU (with its calibration), scored on all archs; then for each case and n, 5 random draws of n
fit archs, the other >= 250 being the held-out test set. Fits without a prior (roofline model) and with each prior; prints Spearman ρ,
share within ±10% and RMSE on the held-out archs, beside the fit's own leave-one-out estimate.

    .venv/bin/python benchmarks/device_adaptation.py --phase measure
    .venv/bin/python benchmarks/device_adaptation.py --phase report [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HWNAS = [str(Path(sys.executable).parent / "hwnas")]
TABLES = ROOT / "latency_tables"
#: case → (space, table stratifying the pick, priors: name → table or ("profile", backend))
#: The shipped tables were profiled on earlier VMs of this kind: "another device" for today's.
CASES = {
    "nasbench201": ("nasbench201", TABLES / "cpu-ort-1t-cells_r32.json",
                    {"torch-cpu r32": "profile", "shipped r32": TABLES / "cpu-ort-1t-cells_r32.json"}),
    "mobilenetv2": ("mobilenetv2", TABLES / "cpu-ort-1t_r32.json",
                    {"torch-cpu r32": "profile", "shipped r32": TABLES / "cpu-ort-1t_r32.json",
                     "shipped r224": TABLES / "cpu-ort-1t_r224.json"}),
}


def sh(cmd: list[str]) -> None:
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def measure(work: Path, n: int) -> None:
    for case, (space, table, priors) in CASES.items():
        sh(HWNAS + ["latency", "measure", "--space", space, "--archs", n, "--table", table, "--chunk", n,
                    "--out", work / f"{case}.jsonl", "--no-progress"])
        for name, how in priors.items():
            out = work / f"{case}-prior-torch-cpu.json"
            if how == "profile" and not out.exists():
                sh(HWNAS + ["profile", "--space", space, "--backend", "torch-cpu", "--resolution", 32,
                            "--num-classes", 10, "--out", out, "--device-name", "this-cpu-torch-eager"])


def report(work: Path, sizes: list[int], draws: int, as_json: bool) -> None:
    from hwnas.latency import LatencyModel
    from hwnas.latency.fit import fit_table
    from hwnas.latency.held_out import score_measured
    from hwnas.latency.measured import read
    from hwnas.latency.validate import error_stats
    from hwnas.rankstats import spearman
    from hwnas.space import load_space

    rows = []
    for case, (space, shipped, priors) in CASES.items():
        sp = load_space(space)
        meas = read(work / f"{case}.jsonl", sp)
        # the starting point: the per-op table profiled block by block (and its calibration), on all archs
        base = score_measured(LatencyModel.load(shipped), sp, meas)
        rows.append({"case": case, "n": 0, "prior": "profiled table", "spearman": base["spearman"],
                     "spearman_min": base["spearman"], "within_10pct": base["within_10pct"],
                     "within_10pct_min": base["within_10pct"], "rmse_pct": base["rmse_pct"],
                     "loo_rmse_pct": float("nan"), "loo_within_10pct": float("nan"), "loo_spearman": float("nan"),
                     "test_n": len(meas)})
        prior_models = {"none": None}
        for name, how in priors.items():
            path = work / f"{case}-prior-torch-cpu.json" if how == "profile" else how
            prior_models[name] = LatencyModel.load(path, calibration=False)
        for n in sizes:
            for pname, prior in prior_models.items():
                stats = []
                for d in range(draws):
                    rng = np.random.default_rng([d, n])
                    perm = rng.permutation(len(meas))
                    train, test = perm[:n], perm[n:]
                    fit = fit_table(sp, meas.subset(train), device={"name": "bench", "backend": "ort-cpu"},
                                    prior=prior)
                    model = LatencyModel(fit.table, calibration=fit.calibration)
                    test_archs = meas.subset(test)
                    pred = [model.predict(a, space=sp).latency_ms for a in test_archs.archs]
                    e = error_stats(pred, test_archs.latency_ms)
                    stats.append({"spearman": spearman(pred, test_archs.latency_ms), "within_10pct": e["within_10pct"],
                                  "rmse_pct": e["rmse_pct"], "loo_rmse_pct": fit.report["loo_rmse_pct"],
                                  "loo_within_10pct": fit.report["loo_within_10pct"],
                                  "loo_spearman": fit.report["spearman"], "test_n": len(test)})
                agg = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
                agg.update({"spearman_min": float(min(s["spearman"] for s in stats)),
                            "within_10pct_min": float(min(s["within_10pct"] for s in stats))})
                rows.append({"case": case, "n": n, "prior": pname, **agg})
    if as_json:
        print(json.dumps({"machine": platform.processor() or platform.machine(), "rows": rows}))
        return
    print(f"{'space':12} {'n':>3} {'prior':14} {'rho':>6} {'rho min':>7} {'±10%':>6} {'±10% min':>8} "
          f"{'RMSE%':>6} | {'LOO RMSE%':>9} {'LOO ±10%':>8} {'LOO rho':>7}")
    for r in rows:
        print(f"{r['case']:12} {r['n']:3d} {r['prior']:14} {r['spearman']:6.3f} {r['spearman_min']:7.3f} "
              f"{r['within_10pct']:6.0%} {r['within_10pct_min']:8.0%} {r['rmse_pct']:6.2f} | "
              f"{r['loo_rmse_pct']:9.2f} {r['loo_within_10pct']:8.0%} {r['loo_spearman']:7.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", choices=("measure", "report", "all"), default="all")
    ap.add_argument("--archs", type=int, default=300, help="archs measured per space (default 300)")
    ap.add_argument("--sizes", default="10,20,50", help="fit sample sizes (default 10,20,50)")
    ap.add_argument("--draws", type=int, default=5, help="random fit samples per size (default 5)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / "out" / "device_adaptation"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase in ("measure", "all"):
        measure(work, args.archs)
    if args.phase in ("report", "all"):
        report(work, [int(s) for s in args.sizes.split(",")], args.draws, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
