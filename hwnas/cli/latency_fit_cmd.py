"""``hwnas latency fit``: a latency table fitted from whole-model timings (``hwnas.latency.fit``)."""

from __future__ import annotations

import argparse

from hwnas.cli.main import Report, add_json_flag, command
from hwnas.latency import LatencyModel, calibration_path
from hwnas.latency.fit import fit_table
from hwnas.latency.measured import read
from hwnas.safeio import check_writable_output
from hwnas.space import load_space


@command("latency fit", help="fit a latency table (per-block entries and a calibration) from whole-model timings")
def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, help="search space of the measured archs")
    p.add_argument("--measured", required=True, help="measurements file (.jsonl: one {\"arch\", \"latency_ms\"} "
                   "per line; see latency_tables/README.md)")
    p.add_argument("--prior", help="latency table of another device or resolution to rescale (few-shot); "
                   "default: fit a roofline model per op family")
    p.add_argument("--out", required=True, help="fitted table to write (its calibration goes next to it)")
    p.add_argument("--device-name", default="", help="device.name of the table (default: the measurements "
                   "file's, else 'fitted-device')")
    p.add_argument("--backend", help="device.backend recorded (default: the measurements file's, else 'external': "
                   "timed outside hwnas, so search and export cannot re-measure it)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> Report:
    out = check_writable_output(args.out)
    cal_out = calibration_path(out)
    check_writable_output(cal_out, flag="the calibration file of --out")
    sp = load_space(args.space)
    measured = read(args.measured, sp)
    prior = LatencyModel.load(args.prior, calibration=False) if args.prior else None
    device = dict(measured.header.get("device") or {})
    device["name"] = args.device_name or device.get("name") or "fitted-device"
    device["backend"] = args.backend or device.get("backend") or "external"
    device.pop("estimator", None)
    if measured.header.get("estimator"):
        device["measured_with"] = measured.header["estimator"]
    fit = fit_table(sp, measured, device=device, prior=prior)
    fit.table.save(out)
    fit.calibration.save(cal_out)
    r = fit.report
    data = {"out": str(out), "calibration": str(cal_out), "space": sp.name, "entries": len(fit.table),
            "device": {k: v for k, v in fit.table.device.items() if k != "fit"}, **r, "predicted": "fitted"}
    prior_txt = f"rescaling prior {args.prior}" if prior else "roofline model per op family (no prior)"
    lines = [f"{out}: {len(fit.table)} entries for {sp.name} at {measured.settings['resolution']}px fitted from "
             f"{r['n']} measured archs of {device['name']} ({prior_txt}); calibration {cal_out}",
             f"{r['free_parameters']} free + {r['penalized_parameters']} shrunk parameters, lambda {r['lambda']:.3g}; "
             f"fit RMSE {r['fit_rmse_pct']:.2f}%",
             f"leave-one-out (each arch predicted by a fit without it): RMSE {r['loo_rmse_pct']:.2f}%, "
             f"{r['loo_within_10pct']:.0%} within ±10%, Spearman {r['spearman']:.3f}, Kendall {r['kendall']:.3f}"]
    return Report(data, "\n".join(lines))
