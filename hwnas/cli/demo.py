"""The main job end to end on the embedded default (``make demo``).

1. Latency table: the shipped ``ort-cpu`` table of this machine kind for MobileNetV2-style blocks at
   32×32 (10 classes), or, when none matches, a fresh profile of this machine.
2. Budget: 20% below the predicted latency of the ``mobilenet_v2`` preset at the same settings (but
   above the space's smallest achievable latency).
3. Search: SPOS supernet training on digits (entangled candidates: a short CPU run cannot train
   separate candidates, see ``hwnas.supernet``), then evolution under the budget.
4. Retrain the winner from scratch on digits; held-out accuracy.
5. Export to ONNX with parity verification, measured latency next to the prediction, model card.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.export import ExportOptions, export_model
from hwnas.latency import BatchPredictor, LatencyModel, LatencyTable
from hwnas.profile import BackendConfig, ProfileSettings, profile_table
from hwnas.search.runner import SearchSettings, run_search, smallest
from hwnas.search.strategies.evolution import EvolutionConfig
from hwnas.search.strategies.spos import SposEvolution
from hwnas.space import SPACES_DIR, load_space
from hwnas.supernet import SupernetTrainConfig
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

    @classmethod
    def quick(cls) -> "DemoConfig":
        return cls(data_limit=192, search_epochs=1, population=4, generations=2, train_epochs=1, repeats=10)


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
    reference = space.preset(space.presets[0], resolution=cfg.resolution, width_mult=cfg.width_mult,
                             num_classes=num_classes)
    ref_ms = model.predict(reference, space=space).latency_ms
    low, _ = smallest(predictor, "latency")
    budget = round(max(0.8 * ref_ms, 1.05 * low), 4)
    _log(f"budget {budget} ms = 80% of {space.presets[0]}'s predicted {ref_ms:.4f} ms (smallest achievable {low:.4f} ms)")

    strategy = SposEvolution(evolution=EvolutionConfig(population=cfg.population, generations=cfg.generations,
                                                       top_k=max(2, cfg.population // 4)))
    settings = SearchSettings(space=cfg.space, strategy="spos-evolution", table=str(table_path), latency_ms=budget,
                              data=cfg.data, epochs=cfg.search_epochs, resolution=cfg.resolution,
                              width_mult=cfg.width_mult, seed=cfg.seed, data_limit=cfg.data_limit,
                              weight_sharing="entangled", train=SupernetTrainConfig(epochs=cfg.search_epochs, lr=0.05),
                              strategy_settings=strategy.settings())
    _log("search: supernet training, then evolution")
    summary = run_search(settings, strategy, out=str(run_dir), resume=False)
    arch = summary["arch"]

    _log("retraining the winner from scratch")
    trained = train_arch(space, arch, config=TrainConfig(data=cfg.data, epochs=cfg.train_epochs, seed=cfg.seed,
                                                         data_limit=cfg.data_limit),
                         out_dir=run_dir / "retrain")
    _log("exporting to ONNX (verified against PyTorch)")
    card = export_model(space, arch, out_dir=export_dir,
                        options=ExportOptions(name="model", force=True, repeats=cfg.repeats, seed=cfg.seed,
                                              data_limit=cfg.data_limit),
                        weights=str(trained.checkpoint), data=cfg.data, table=str(table_path))
    fp32 = card["latency"]["rows"][0]
    report = {
        "space": cfg.space, "resolution": cfg.resolution, "width_mult": cfg.width_mult, "data": cfg.data,
        "table": str(table_path), "latency_budget_ms": budget, "reference_preset": space.presets[0],
        "reference_predicted_ms": ref_ms, "predicted_latency_ms": summary["predicted_latency_ms"],
        "measured_latency_ms": fp32["measured_ms"], "flops": summary["flops"],
        "params": summary["params"], "supernet_accuracy": summary["accuracy"],
        "retrained_accuracy": trained.accuracy, "onnx_accuracy": (card.get("accuracy") or {}).get("onnx"),
        "max_abs_diff": card["verification"][0]["max_abs_diff"], "constraints_met": summary["constraints_met"],
        "run": str(run_dir), "export": str(export_dir), "onnx": str(export_dir / card["verification"][0]["file"]),
        "evaluated": summary["evaluated"],
    }
    return report


def render(r: dict[str, Any]) -> str:
    """The short table ``make demo`` prints."""
    def ms(v):
        return "n/a" if v is None else f"{v:.4f} ms"

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.2f}%"

    rows = [
        ("search space", f"{r['space']} at {r['resolution']}x{r['resolution']}, width x{r['width_mult']}, {r['data']}"),
        ("latency table", r["table"]),
        ("latency budget", f"{r['latency_budget_ms']:.4f} ms (80% of {r['reference_preset']})"),
        ("predicted latency", ms(r["predicted_latency_ms"])),
        ("measured latency", ms(r["measured_latency_ms"]) + " (exported ONNX, table's backend)"),
        ("FLOPs / params", f"{r['flops'] / 1e6:.2f}M / {r['params'] / 1e6:.3f}M"),
        ("accuracy", f"supernet {pct(r['supernet_accuracy'])} (arch split), retrained {pct(r['retrained_accuracy'])}"
                     f" held-out, ONNX {pct(r['onnx_accuracy'])}"),
        ("ONNX parity", f"max |diff| {r['max_abs_diff']:.2e}" if r["max_abs_diff"] is not None else "n/a"),
        ("candidates", f"{r['evaluated']} evaluated, constraints {'met' if r['constraints_met'] else 'NOT met'}"),
        ("run / export", f"{r['run']} / {r['onnx']}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
