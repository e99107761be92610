"""The main job end to end on the embedded default (``make demo``).

1. Latency table: the shipped ``ort-cpu`` table of this machine kind for MobileNetV2-style blocks at
   32×32 (10 classes), or, when none matches, a fresh profile of this machine.
2. Budget: ``--latency-rel mobilenet_v2:0.8`` (the space's first preset), i.e. 80% of its latency:
   the table's prediction turns it into ms for the search, and the measured final selection judges
   each candidate's ratio to ``mobilenet_v2`` timed side by side in the same rounds (issue 15: the
   ratio survives a table gone stale on a machine whose speed moves; the absolute figure does not).
3. Search: SPOS supernet training on digits (entangled candidates: a short CPU run cannot train
   separate candidates, see ``hwnas.supernet``), then evolution under the budget, then measured
   final selection of the best ``verify`` candidates (``hwnas.search.selection``).
4. Retrain the winner from scratch on digits; held-out accuracy.
4b. When ``rank_archs`` > 0: the supernet's ranking check (``hwnas supernet rank --run``, Kendall tau
   between supernet and stand-alone accuracy of architectures stratified over latency; issue 16).
5. Export to ONNX with parity verification, measured latency next to the prediction, model card.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.export import ExportOptions, export_model
from hwnas.latency import BatchPredictor, LatencyModel, LatencyTable
from hwnas.profile import BackendConfig, ProfileSettings, SteadySettings, profile_table
from hwnas.search.runner import SearchSettings, run_search, smallest
from hwnas.search.strategies.evolution import EvolutionConfig
from hwnas.search.strategies.spos import SposEvolution
from hwnas.space import SPACES_DIR, load_space
from hwnas.supernet import SupernetTrainConfig
from hwnas.supernet.rank_check import RankCheckConfig, run_rank_check, source_from_run
from hwnas.train import TrainConfig, train_arch

TABLES_DIR = SPACES_DIR.parent / "latency_tables"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (``quick`` is the CI-sized form used by the test suite)."""

    space: str = "mobilenetv2"
    resolution: int = 32
    width_mult: float = 1.0
    data: str = "digits"
    data_limit: int | None = None
    search_epochs: int = 10
    population: int = 16
    generations: int = 6
    train_epochs: int = 15
    repeats: int = 50
    seed: int = 0
    budget_factor: float = 0.8
    verify: int = 8
    verify_steady: SteadySettings = field(default_factory=SteadySettings)
    rank_archs: int = 8  # 0: the supernet's ranking is not measured
    rank_epochs: int = 5

    @classmethod
    def quick(cls) -> "DemoConfig":
        return cls(data_limit=192, search_epochs=1, population=4, generations=2, train_epochs=1, repeats=10,
                   verify=2, verify_steady=SteadySettings(rounds=3, runs_per_round=1, warmup=1, retries=0),
                   rank_archs=3, rank_epochs=1)


def find_table(*, space: str, resolution: int, width_mult: float, num_classes: int,
               folder: Path = TABLES_DIR) -> Path | None:
    """A shipped ``ort-cpu`` single-thread table covering the space at these settings, if any."""
    for path in sorted(folder.glob("*.json")):
        try:
            dev = LatencyTable.load(path).device
        except Exception:  # noqa: BLE001 - an unreadable file is simply not a match
            continue
        if (dev.get("backend") == "ort-cpu" and dev.get("threads") == 1 and space in dev.get("spaces", [])
                and dev.get("resolution") == resolution and float(dev.get("width_mult", 1.0)) == width_mult
                and dev.get("num_classes") == num_classes):
            return path
    return None


def _log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def run_demo(cfg: DemoConfig, *, run_dir: str | Path, export_dir: str | Path) -> dict[str, Any]:
    """Runs the demo; returns its report (also ``run_dir/summary.json`` and ``export_dir/card.json``)."""
    run_dir, export_dir = Path(run_dir), Path(export_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # the demo's own folder: every demo starts afresh
    space = load_space(cfg.space)
    num_classes = 10
    table_path = find_table(space=cfg.space, resolution=cfg.resolution, width_mult=cfg.width_mult,
                            num_classes=num_classes)
    if table_path is None:
        table_path = run_dir.parent / f"{run_dir.name}-table.json"
        _log(f"no shipped table matches; profiling this machine into {table_path} (ort-cpu, 1 thread)")
        profile_table([space], config=BackendConfig(backend="ort-cpu", threads=1), out=table_path,
                      resolution=cfg.resolution, width_mult=cfg.width_mult, num_classes=num_classes,
                      settings=ProfileSettings(repeats=20), resume=table_path.exists())
    else:
        _log(f"latency table: {table_path}")
    model = LatencyModel.load(table_path)
    predictor = BatchPredictor.build(model, space, resolution=cfg.resolution, width_mult=cfg.width_mult, num_classes=num_classes)
    ref_name = space.presets[0]
    reference = space.preset(ref_name, resolution=cfg.resolution, width_mult=cfg.width_mult, num_classes=num_classes)
    ref_ms = model.predict(reference, space=space).latency_ms
    low, _ = smallest(predictor, "latency")
    _log(f"budget: {cfg.budget_factor:g} x {ref_name} (predicted {ref_ms:.4f} ms, so {cfg.budget_factor * ref_ms:.4f} "
         f"ms predicted; smallest achievable {low:.4f} ms), judged side by side with {ref_name} when measured")

    strategy = SposEvolution(evolution=EvolutionConfig(population=cfg.population, generations=cfg.generations,
                                                       top_k=max(2, cfg.population // 4)))
    settings = SearchSettings(space=cfg.space, strategy="spos-evolution", table=str(table_path),
                              latency_rel=f"{ref_name}:{cfg.budget_factor:g}",
                              data=cfg.data, epochs=cfg.search_epochs, resolution=cfg.resolution,
                              width_mult=cfg.width_mult, seed=cfg.seed, data_limit=cfg.data_limit,
                              weight_sharing="entangled", train=SupernetTrainConfig(epochs=cfg.search_epochs, lr=0.05),
                              strategy_settings=strategy.settings(), verify=cfg.verify,
                              verify_steady=cfg.verify_steady)
    _log("search: supernet training, then evolution, then measured selection")
    summary = run_search(settings, strategy, out=str(run_dir), resume=False)
    arch = summary["arch"]

    _log("retraining the winner from scratch")
    trained = train_arch(space, arch, config=TrainConfig(data=cfg.data, epochs=cfg.train_epochs, seed=cfg.seed,
                                                         data_limit=cfg.data_limit),
                         out_dir=run_dir / "retrain")
    ranking = None
    if cfg.rank_archs > 0:
        _log(f"supernet ranking check: {cfg.rank_archs} architectures, supernet vs stand-alone accuracy")
        ranking = run_rank_check(source_from_run(run_dir), RankCheckConfig(archs=cfg.rank_archs, epochs=cfg.rank_epochs,
                                                                           seed=cfg.seed),
                                 out=run_dir / "rank", resume=False)
    _log("exporting to ONNX (verified against PyTorch)")
    card = export_model(space, arch, out_dir=export_dir,
                        options=ExportOptions(name="model", force=True, repeats=cfg.repeats, seed=cfg.seed,
                                              data_limit=cfg.data_limit),
                        weights=str(trained.checkpoint), data=cfg.data, table=str(table_path))
    fp32 = card["latency"]["rows"][0]
    report = {
        "space": cfg.space, "resolution": cfg.resolution, "width_mult": cfg.width_mult, "data": cfg.data,
        "table": str(table_path), "latency_budget_ms": summary["latency_budget_ms"], "reference_preset": ref_name,
        "budget_factor": cfg.budget_factor, "reference_predicted_ms": ref_ms,
        "reference_measured_ms": summary["reference_measured_ms"],
        "predicted_latency_ms": summary["predicted_latency_ms"],
        "measured_latency_ms": summary["measured_latency_ms"], "measured_spread_pct": summary["measured_spread_pct"],
        "measured_ratio": summary["measured_ratio"], "latency_source": summary["latency_source"],
        "constraints_judged_on": summary["constraints_judged_on"], "verified": len(summary["verified"]),
        "table_drift": summary["table_drift"],
        "export_measured_latency_ms": fp32["measured_ms"], "flops": summary["flops"],
        "params": summary["params"], "supernet_accuracy": summary["accuracy"],
        "retrained_accuracy": trained.accuracy, "onnx_accuracy": (card.get("accuracy") or {}).get("onnx"),
        "max_abs_diff": card["verification"][0]["max_abs_diff"], "constraints_met": summary["constraints_met"],
        "run": str(run_dir), "export": str(export_dir), "onnx": str(export_dir / card["verification"][0]["file"]),
        "evaluated": summary["evaluated"],
        "supernet_kendall_tau": None if ranking is None else ranking["kendall_tau"],
        "supernet_spearman": None if ranking is None else ranking["spearman"],
        "rank_archs": 0 if ranking is None else ranking["n"], "rank_epochs": cfg.rank_epochs,
    }
    return report


def _ranking(r: dict[str, Any]) -> str:
    if not r["rank_archs"]:
        return f"not measured (hwnas supernet rank --run {r['run']} --out DIR)"
    tau = "undefined (one ranking is constant)" if r["supernet_kendall_tau"] is None else f"{r['supernet_kendall_tau']:.3f}"
    return (f"Kendall tau {tau} measured over {r['rank_archs']} architectures stratified over latency "
            f"(supernet vs stand-alone, {r['rank_epochs']} epoch(s) each; {r['run']}/rank)")


def render(r: dict[str, Any]) -> str:
    """The short table ``make demo`` prints."""
    def ms(v):
        return "n/a" if v is None else f"{v:.4f} ms"

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    measured = r["latency_source"] == "measured"
    if measured:
        side = (f"{ms(r['measured_latency_ms'])} measured (steady, spread {r['measured_spread_pct']:.1f}%), "
                f"{r['verified']} candidate(s) timed side by side with {r['reference_preset']}")
        ratio = (f"{r['measured_ratio']:.3f} measured vs factor {r['budget_factor']:g} "
                 f"({r['reference_preset']} measured {ms(r['reference_measured_ms'])}, "
                 f"table drift {r['table_drift']:.2f}x)")
    else:
        side, ratio = "not measured: the result is PREDICTED ONLY", "n/a (predicted only)"
    rows = [
        ("search space", f"{r['space']} at {r['resolution']}x{r['resolution']}, width x{r['width_mult']}, {r['data']}"),
        ("latency table", r["table"]),
        ("latency budget", f"{r['budget_factor']:g} x {r['reference_preset']} = {r['latency_budget_ms']:.4f} ms "
                           f"predicted ({r['reference_preset']} predicted {ms(r['reference_predicted_ms'])})"),
        ("latency", f"{ms(r['predicted_latency_ms'])} predicted | {side}"),
        ("ratio to reference", ratio),
        ("exported model", ms(r["export_measured_latency_ms"]) + " measured by hwnas export (ONNX, table's backend)"),
        ("FLOPs / params", f"{r['flops'] / 1e6:.2f}M / {r['params'] / 1e6:.3f}M"),
        ("accuracy", f"supernet {pct(r['supernet_accuracy'])} (arch split), retrained {pct(r['retrained_accuracy'])}"
                     f" held-out, ONNX {pct(r['onnx_accuracy'])}"),
        ("supernet ranking", _ranking(r)),
        ("ONNX parity", f"max |diff| {r['max_abs_diff']:.2e}" if r["max_abs_diff"] is not None else "n/a"),
        ("candidates", f"{r['evaluated']} evaluated, constraints {'met' if r['constraints_met'] else 'NOT met'} "
                       f"(judged on the {r['constraints_judged_on']} "
                       f"{'ratio to ' + r['reference_preset'] if measured else 'latency'})"),
        ("run / export", f"{r['run']} / {r['onnx']}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
