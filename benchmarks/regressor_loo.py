"""Leave-one-out check of the per-block latency regressor (issue 4).

On the ProxylessNAS Pixel-1 table (``../shared/reference/latency_tables/proxylessnas_pixel1_mobile_trim.yaml``,
72 entries), each entry is predicted by a regressor fitted on the other 71, for every registered
model (``hwnas.latency.regressor.REGRESSORS``). Fixed parts (``Conv``, ``Conv_1``, ``Logits``) occur
once each and cannot be estimated without themselves, so the statistics cover the 69 MBConv entries.
Then the released Proxyless-mobile net, whose stage 1 is 32 wide where the table has 24, is
predicted with its three missing blocks estimated, next to the paper's measured 78 ms.

    .venv/bin/python benchmarks/regressor_loo.py [--table T] [--json]

``--table`` adds the same leave-one-out on any hwnas table (e.g. one profiled with ``hwnas profile``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PIXEL1 = ROOT.parent / "shared" / "reference" / "latency_tables" / "proxylessnas_pixel1_mobile_trim.yaml"


def loo_summary(entries: dict[str, float], method: str) -> dict:
    from hwnas.latency.regressor import leave_one_out

    t0 = time.perf_counter()
    rows = leave_one_out(entries, method=method)
    err = np.array([r["error_pct"] for r in rows if r["error_pct"] is not None])
    return {"method": method, "n": int(err.size), "not_estimable": sum(r["error_pct"] is None for r in rows),
            "within_5pct": float(np.mean(np.abs(err) <= 5)), "within_10pct": float(np.mean(np.abs(err) <= 10)),
            "rmse_pct": float(np.sqrt(np.mean(err**2))), "mape": float(np.mean(np.abs(err))),
            "max_abs_pct": float(np.max(np.abs(err))), "seconds": round(time.perf_counter() - t0, 2),
            "worst": sorted(({"key": r["key"], "error_pct": round(r["error_pct"], 1)} for r in rows
                             if r["error_pct"] is not None), key=lambda r: -abs(r["error_pct"]))[:3]}


def proxyless_mobile(table) -> dict:
    from hwnas.latency.model import LatencyModel
    from hwnas.space.loader import load_space

    sp = load_space("proxyless-mobile")
    model = LatencyModel.from_table(table)
    pred = model.predict(sp.preset("proxyless_mobile"), space=sp)
    est = {r["key"]: round(r["ms"], 3) for r in pred.per_block if r["source"] == "estimated"}
    table_part = sum(r["ms"] for r in pred.per_block if r["source"] == "table")
    return {"predicted_ms": round(pred.latency_ms, 2), "table_part_ms": round(table_part, 3), "estimated": est,
            "paper_measured_ms": 78.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", help="also run the leave-one-out on this hwnas latency table")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    from hwnas.latency.importers import import_proxyless_yaml
    from hwnas.latency.regressor import REGRESSORS
    from hwnas.latency.table import LatencyTable

    pixel1 = import_proxyless_yaml(PIXEL1)
    medians = {k: float(e["median_ms"]) for k, e in pixel1.entries.items()}
    out = {"pixel1": [loo_summary(medians, m) for m in REGRESSORS], "proxyless_mobile": proxyless_mobile(pixel1)}
    if args.table:
        t = LatencyTable.load(args.table)
        out["table"] = {"path": args.table, "device": {k: t.device.get(k) for k in ("backend", "threads", "processor",
                                                                                   "resolution")},
                        "loo": [loo_summary({k: float(e["median_ms"]) for k, e in t.entries.items()}, m)
                                for m in REGRESSORS]}
    if args.json:
        print(json.dumps(out))
        return 0
    for name, rows in [("Pixel-1 (ProxylessNAS mobile_trim.yaml)", out["pixel1"])] + (
            [(f"{args.table}", out["table"]["loo"])] if args.table else []):
        print(f"\nLeave-one-out, {name}:")
        print("| regressor | entries | within ±5% | within ±10% | RMSE % | MAPE % | max |error| % |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['method']} | {r['n']} | {r['within_5pct']:.0%} | {r['within_10pct']:.0%} | "
                  f"{r['rmse_pct']:.1f} | {r['mape']:.1f} | {r['max_abs_pct']:.1f} |")
    pm = out["proxyless_mobile"]
    print(f"\nProxyless-mobile on the Pixel-1 table: {pm['predicted_ms']} ms predicted "
          f"({pm['table_part_ms']} ms from 20 table entries + 3 estimated: {pm['estimated']}); "
          f"paper: {pm['paper_measured_ms']} ms measured", file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
