"""How fast a full latency table is built, and how tight its entries are.

Builds the complete table of a space (default: ``proxyless`` at 224x224, every one of its 70
distinct blocks) on each requested backend, side by side in one run, from a cold start (no export
cache), and prints per backend: blocks, export / timing / total seconds, the median, p90 and max
coefficient of variation (std / mean) of the entries, how many entries were re-measured, and the
sum of the entries' medians.

Targets (issue 3): ``ort-cpu`` with 1 thread builds the full proxyless 224 table in under 3 minutes
on the project's machine, with a median CV under 3%.

    .venv/bin/python benchmarks/profile_speed.py                       # ort-cpu and torch-cpu, 1 thread
    .venv/bin/python benchmarks/profile_speed.py --backends ort-cpu --json

Timings are only meaningful on a quiet machine (nothing else running on the cores); the last column
is the 1-minute load average after each build, to tell.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hwnas.profile.backend import BackendConfig  # noqa: E402
from hwnas.profile.profiler import ProfileSettings, profile_table  # noqa: E402
from hwnas.space.loader import load_space  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--backends", default="ort-cpu,torch-cpu", help="comma-separated backends, side by side")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--min-sample-ms", type=float, default=0.0)
    p.add_argument("--keep", help="folder to keep the built tables in (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)

    sp = load_space(args.space)
    settings = ProfileSettings(repeats=args.repeats, warmup=args.warmup, min_sample_ms=args.min_sample_ms)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for backend in args.backends.split(","):
            out = folder / f"{args.space}_{args.resolution}_{backend}_{args.threads}t.json"
            if out.exists():
                out.unlink()
            res = profile_table([sp], config=BackendConfig(backend=backend, threads=args.threads), out=out,
                                resolution=args.resolution, settings=settings, progress=False)
            s = res.summary()
            rows.append({"backend": backend, "threads": args.threads, "blocks": s["entries"],
                         "export_s": s["export_seconds"], "timing_s": s["timing_seconds"], "total_s": s["seconds"],
                         "cv_median_pct": 100 * s["cv_median"], "cv_p90_pct": 100 * s["cv_p90"],
                         "cv_max_pct": 100 * s["cv_max"], "remeasured": s["remeasured"],
                         "unstable": len(s["unstable"]), "load_avg": s["load_avg"],
                         "sum_median_ms": sum(e["median_ms"] for e in res.table.entries.values())})
    machine = {"processor": res.table.device.get("processor"), "cpus": os.cpu_count(),
               "python": platform.python_version(), "versions": res.table.device.get("versions")}
    if args.json:
        print(json.dumps({"space": args.space, "resolution": args.resolution, "repeats": args.repeats,
                          "warmup": args.warmup, "min_sample_ms": args.min_sample_ms, "machine": machine,
                          "rows": rows}))
        return 0
    print(f"Full latency table of space {args.space} at {args.resolution}x{args.resolution}, "
          f"{args.repeats} samples/entry after {args.warmup} warm-up, samples >= {args.min_sample_ms} ms")
    print(f"machine: {machine['processor']}, {machine['cpus']} cores, Python {machine['python']}")
    print()
    print("| backend | threads | blocks | export s | timing s | total s | median CV | p90 CV | max CV "
          "| re-measured | still > max-cv | sum of medians ms | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['threads']} | {r['blocks']} | {r['export_s']:.1f} | {r['timing_s']:.1f} | "
              f"{r['total_s']:.1f} | {r['cv_median_pct']:.2f}% | {r['cv_p90_pct']:.2f}% | {r['cv_max_pct']:.2f}% | "
              f"{r['remeasured']} | {r['unstable']} | {r['sum_median_ms']:.2f} | {r['load_avg']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
