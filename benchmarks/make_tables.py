"""Builds the shipped latency tables in ``latency_tables/``: this machine's CPU, ONNX Runtime, 1 thread.

One table per resolution, covering every shipped search space (keys shared between spaces are
measured once): 224x224 with each space's 1000 classes, and the small CPU-run setting (32x32,
10 classes as for ``--data digits``), both at width multiplier 1.0. Each run is resumable: run the
same command again after an interruption and it continues where it stopped (exports are cached in
``<table>.work/`` until the table is complete).

    .venv/bin/python benchmarks/make_tables.py                    # both tables, all spaces
    .venv/bin/python benchmarks/make_tables.py --resolutions 32   # only the small one

Run it on a quiet machine: the numbers are only as good as the machine's idleness.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwnas.profile.backend import BackendConfig  # noqa: E402
from hwnas.profile.profiler import ProfileSettings, profile_table  # noqa: E402
from hwnas.space.loader import load_space, space_names  # noqa: E402

#: resolution → classes of the table (224: the spaces' ImageNet heads; 32: the digits data set).
CLASSES = {224: 1000, 32: 10}
#: The device name of the shipped 224/32-px tables (made on the Intel Xeon variant of the machine kind).
DEVICE_NAME = "hwnas-ci-cpu (2-core Intel Xeon, AVX-512)"


def _default_device_name() -> str:
    """``hwnas-ci-cpu (N-core <processor model>)`` of this machine (the header's ``processor`` too)."""
    import os

    from hwnas.profile.backend import processor_name

    return f"hwnas-ci-cpu ({os.cpu_count()}-core {processor_name()})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", default="224,32")
    p.add_argument("--spaces", default="all", help="comma-separated space names (default: every shipped space)")
    p.add_argument("--out-dir", default=str(ROOT / "latency_tables"))
    p.add_argument("--prefix", default="cpu-ort-1t", help="file names: <prefix>_r<resolution>.json")
    p.add_argument("--device-name", default=None,
                   help=f"table device name (default: this machine's core count and processor; the shipped "
                        f"tables were named {DEVICE_NAME!r})")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)

    names = space_names() if args.spaces == "all" else args.spaces.split(",")
    spaces = [load_space(n) for n in names]
    config = BackendConfig(backend="ort-cpu", threads=1, device_name=args.device_name or _default_device_name())
    settings = ProfileSettings(repeats=args.repeats, warmup=args.warmup)
    report = []
    for res in (int(r) for r in args.resolutions.split(",")):
        out = Path(args.out_dir) / f"{args.prefix}_r{res}.json"
        result = profile_table(spaces, config=config, out=out, resolution=res, width_mult=1.0,
                               num_classes=CLASSES.get(res, 1000), settings=settings, resume=True)
        s = result.summary()
        s.pop("device")
        s.pop("cv")
        s["unstable"] = len(s["unstable"])
        report.append({"resolution": res, **s})
        print(json.dumps(report[-1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
