"""Supernet ranking quality before and after the supernet-training fixes (issue 16, item 2).

Per space and setting, runs ``hwnas supernet rank``: a supernet trained here with uniform single
paths (SPOS), N architectures stratified over predicted latency, each scored with inherited weights
(BN recalibrated) and trained stand-alone; Kendall tau-b, Spearman rho and top-5 overlap between the
two accuracies (Yu et al., ICLR 2020, Sec. 4). Every setting of a space uses the same sample and the
same stand-alone runs (``--standalone-cache``), so settings differ only in the supernet.

Settings (``--settings``, comma-separated names of ``SETTINGS``):

* ``papers``: separate candidates, independent initialization, no warm-up (SPOS/FairNAS/ProxylessNAS);
* ``aligned``: separate candidates that start aligned (``--candidate-init aligned``);
* ``warmup``: the papers' supernet with a linear learning-rate warm-up over the first quarter of the
  epochs (Goyal et al. 2017, Sec. 2.2);
* ``aligned+warmup``: aligned candidates and the same warm-up;
* ``sandwich``: the papers' supernet trained with the sandwich rule and in-place distillation (BigNAS);
* ``split``: separate candidates trained entangled for the first half of the epochs, then split
  (``--shared-epochs``, Few-shot NAS's weight transfer, Zhao et al. 2021);
* ``entangled``: entangled candidates (Once-for-All's elastic kernel and width).

Outputs: ``OUT/<space>/<setting>/`` (the check's run folder), ``OUT/<space>/standalone/`` (shared
stand-alone runs), ``OUT/ranking.json`` (the table's rows). Needs Fashion-MNIST (Debian package
``dataset-fashion-mnist``) for the default ``--data``.

Usage:
  python benchmarks/ranking.py --spaces mobilenetv2 --settings papers,aligned --archs 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The CLI of this interpreter's environment (``.venv/bin/hwnas`` when run with ``.venv/bin/python``).
HWNAS = [str(Path(sys.executable).parent / "hwnas")]

SETTINGS: dict[str, list[str]] = {
    "papers": ["--weight-sharing", "separate", "--candidate-init", "independent", "--warmup-epochs", "0"],
    "aligned": ["--weight-sharing", "separate", "--candidate-init", "aligned", "--warmup-epochs", "0"],
    "warmup": ["--weight-sharing", "separate", "--candidate-init", "independent", "--warmup-epochs", "QUARTER"],
    "aligned+warmup": ["--weight-sharing", "separate", "--candidate-init", "aligned", "--warmup-epochs", "QUARTER"],
    "sandwich": ["--weight-sharing", "separate", "--candidate-init", "independent", "--warmup-epochs", "0",
                 "--sandwich"],
    "split": ["--weight-sharing", "separate", "--candidate-init", "aligned", "--warmup-epochs", "0",
              "--shared-epochs", "HALF"],
    "entangled": ["--weight-sharing", "entangled", "--candidate-init", "independent", "--warmup-epochs", "0"],
}


def _placeholder(arg: str, epochs: int) -> str:
    """``HALF`` / ``QUARTER`` of the supernet epochs, else the argument itself."""
    return {"HALF": str(epochs / 2), "QUARTER": str(epochs / 4)}.get(arg, arg)


def run_check(space: str, setting: str, args: argparse.Namespace, out: Path) -> dict:
    """One ``hwnas supernet rank`` run (resumed when its folder exists); its report and wall time."""
    folder = out / space / setting
    cmd = [*HWNAS, "supernet", "rank", "--space", space, "--table", args.table, "--data", args.data,
           "--data-limit", str(args.data_limit), "--resolution", str(args.resolution), "--archs", str(args.archs),
           "--epochs", str(args.epochs), "--supernet-epochs", str(args.supernet_epochs), "--seed", str(args.seed),
           "--standalone-cache", str(out / space / "standalone"), "--out", str(folder), "--no-progress", "--json",
           *(_placeholder(a, args.supernet_epochs) for a in SETTINGS[setting])]
    if (folder / "config.json").exists():
        cmd.append("--resume")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}\nfailed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    return {"space": space, "setting": setting, "n": report["n"], "kendall_tau": report["kendall_tau"],
            "spearman": report["spearman"], "top5_overlap": report["top5_overlap"],
            "supernet_train_acc": report.get("supernet_train_accuracy"),
            "supernet_acc_mean": sum(p["supernet_accuracy"] for p in report["pairs"]) / report["n"],
            "standalone_acc_mean": sum(p["standalone_accuracy"] for p in report["pairs"]) / report["n"],
            "reused": report["reused"], "seconds": round(time.time() - t0, 1), "out": str(folder)}


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", default="mobilenetv2,proxyless,mnasnet")
    ap.add_argument("--settings", default="papers,aligned")
    ap.add_argument("--table", default="latency_tables/cpu-ort-1t_r32.json")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-limit", type=int, default=2000, help="examples per split")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=2, help="stand-alone epochs per architecture")
    ap.add_argument("--supernet-epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "ranking"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for space in args.spaces.split(","):
        for setting in args.settings.split(","):
            if setting not in SETTINGS:
                raise SystemExit(f"unknown setting {setting!r} (known: {', '.join(SETTINGS)})")
            rows.append(run_check(space, setting, args, out))
            r = rows[-1]
            print(f"{space} {setting}: tau {_fmt(r['kendall_tau'], '.3f')} ({r['seconds']:.0f} s)", file=sys.stderr,
                  flush=True)
            (out / "ranking.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=1))
    print(f"{args.data}, ≤{args.data_limit} per split, {args.resolution} px, {args.archs} archs, supernet "
          f"{args.supernet_epochs} epochs, stand-alone {args.epochs} epochs, seed {args.seed}")
    print("| space | setting | n | tau | rho | top-5 | supernet train acc | supernet acc (mean) | "
          "stand-alone acc (mean) | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['space']} | {r['setting']} | {r['n']} | {_fmt(r['kendall_tau'], '.3f')} | "
              f"{_fmt(r['spearman'], '.3f')} | {r['top5_overlap']:.2f} | {_fmt(r['supernet_train_acc'], '.3f')} | "
              f"{r['supernet_acc_mean']:.3f} | {r['standalone_acc_mean']:.3f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
