"""``hwnas search``: load everything, check the budget is feasible, run a strategy, write the run.

The run directory (``hwnas.train.runs``) holds the resolved settings, the history, the atomic checkpoint,
``summary.json``, ``best_arch.json`` and ``pareto.png``. ``--resume`` continues from the checkpoint
and ends with the same result as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.latency import BatchPredictor, LatencyModel, LatencyTable
from hwnas.plots import pareto_plot
from hwnas.search.objective import Constraints
from hwnas.search.strategies import SearchContext, Strategy, load_strategies
from hwnas.search.strategies.base import Costs
from hwnas.space import ArchSettings, CostCounter, SearchSpace, load_space, minimize
from hwnas.supernet import SuperNet, SupernetEvaluator, SupernetTrainConfig, train_supernet
from hwnas.train import RunDir, load_dataset


@dataclass(frozen=True)
class SearchSettings:
    """Resolved settings of a search (recorded in ``config.json``)."""

    space: str
    strategy: str
    table: str
    latency_ms: float
    data: str = "digits"
    epochs: int = 5
    flops_max: float | None = None
    params_max: float | None = None
    resolution: int | None = None
    width_mult: float | None = None
    seed: int = 0
    data_limit: int | None = None
    pareto: tuple[float, ...] = ()
    bn_batches: int = 4
    weight_sharing: str = "separate"
    train: SupernetTrainConfig = field(default_factory=SupernetTrainConfig)
    strategy_settings: dict[str, Any] = field(default_factory=dict)


def _table_setting(table: LatencyTable, key: str, given: Any, default: Any) -> Any:
    have = table.device.get(key)
    if given is not None and have is not None and given != have:
        raise InputError(f"latency table {table.path} was profiled with {key} {have}, but --{key.replace('_', '-')} "
                         f"is {given}; profile a table for these settings.")
    return given if given is not None else (have if have is not None else default)


def smallest(predictor, kind: str) -> tuple[float, np.ndarray]:
    """Exact smallest predicted latency (ms), FLOPs or params over the space, and an argmin."""
    terms, const = predictor.terms(kind)
    return minimize(terms, [int(n) for n in predictor.num_options], const=const)


def check_feasible(predictor, constraints: Constraints, budgets: list[float]) -> dict[str, float]:
    """Raises ``InputError`` with the smallest achievable value when a bound cannot be met."""
    lows = {}
    checks = [("latency", min(budgets), "--latency-ms", "ms")]
    if constraints.flops_max is not None:
        checks.append(("flops", constraints.flops_max, "--flops-max", "FLOPs"))
    if constraints.params_max is not None:
        checks.append(("params", constraints.params_max, "--params-max", "parameters"))
    for kind, bound, flag, unit in checks:
        low, _ = smallest(predictor, kind)
        lows[kind] = low
        if bound < low:
            shown = f"{low:.4g} {unit}"
            raise InputError(f"{flag} {bound:g} is infeasible: the smallest achievable predicted value in this "
                             f"space is {shown}.")
    return lows


def run_search(settings: SearchSettings, strategy: Strategy, *, out: str, resume: bool) -> dict[str, Any]:
    """Runs a search and returns its summary (also written to ``out/summary.json``)."""
    t0 = time.time()
    space: SearchSpace = load_space(settings.space)
    table = LatencyTable.load(settings.table)
    model = LatencyModel.load(settings.table)
    resolution = _table_setting(table, "resolution", settings.resolution, space.spec.resolution)
    width_mult = float(_table_setting(table, "width_mult", settings.width_mult, 1.0))
    table.check_resolution(resolution)
    ds = load_dataset(settings.data, seed=settings.seed, limit=settings.data_limit)
    num_classes = ds.num_classes
    predictor = BatchPredictor.build(model, space, resolution=resolution, width_mult=width_mult, num_classes=num_classes)
    if predictor.estimated:
        print(f"hwnas: {len(predictor.estimated)} block(s) of the space are not in the table and are estimated "
              f"by the per-block regressor.", file=sys.stderr)
    constraints = Constraints(latency_ms=settings.latency_ms, flops_max=settings.flops_max,
                              params_max=settings.params_max)
    budgets = [settings.latency_ms] + [b for b in settings.pareto if b != settings.latency_ms]
    lows = check_feasible(predictor, constraints, budgets)
    config = {**asdict(settings), "pareto": list(settings.pareto), "resolved": {
        "resolution": resolution, "width_mult": width_mult, "num_classes": num_classes,
        "min_latency_ms": lows["latency"], "estimated_blocks": len(predictor.estimated)}}
    run = RunDir(out, config=config, resume=resume)
    state = run.load_checkpoint() if resume else None
    if state is not None and "summary" in state:
        return state["summary"]

    torch.manual_seed(settings.seed)
    supernet = SuperNet(space, resolution=resolution, width_mult=width_mult, num_classes=num_classes,
                        sharing=settings.weight_sharing)
    supernet.to(memory_format=torch.channels_last)
    if state is not None and "supernet" in state:
        supernet.load_state_dict(state["supernet"])
    costs = Costs(latency=predictor.latency, flops=predictor.flops, params=predictor.params)
    train_state: dict[str, Any] = dict((state or {}).get("supernet_train", {}))

    def supernet_state() -> dict[str, Any]:
        return {"phase": "search", "supernet": supernet.state_dict(), "supernet_train": train_state}

    def train_weights(sampler) -> None:
        nonlocal state
        final = train_supernet(supernet, ds, sampler, config=settings.train, seed=settings.seed, run=run,
                               state=state)
        train_state.update(final)

    evaluator = SupernetEvaluator(supernet, ds, bn_batches=settings.bn_batches, seed=settings.seed)
    ctx = SearchContext(space=space, constraints=constraints, costs=costs, seed=settings.seed, run=run, state=state,
                        train_weights=train_weights, score=evaluator.score, budgets=tuple(budgets),
                        settings=ArchSettings(resolution=resolution, width_mult=width_mult, num_classes=num_classes),
                        predictor=predictor, table=table, dataset=ds, train_config=settings.train,
                        supernet=supernet, supernet_state=supernet_state)
    result = strategy.search(ctx)

    counter = CostCounter()

    def describe(indices, accuracy: float, budget: float) -> dict[str, Any]:
        arch = space.decode(np.asarray(indices), resolution=resolution, width_mult=width_mult, num_classes=num_classes)
        pred = model.predict(arch, space=space)
        cost = counter.blocks(space.resolve(arch))
        met = bool(replace(constraints, latency_ms=budget).feasible(latency=pred.latency_ms, flops=cost.flops,
                                                                 params=cost.params))
        return {"arch": arch, "latency_budget_ms": budget, "predicted_latency_ms": pred.latency_ms,
                "flops": cost.flops, "params": cost.params, "accuracy": accuracy, "constraints_met": met}

    main = describe(result.best, result.score, settings.latency_ms)
    winners = [describe(w["indices"], w["accuracy"], w["budget_ms"]) for w in result.extra.get("winners", [])]
    summary = {
        **main,
        "accuracy_kind": result.extra.get(
            "accuracy_kind", "top-1 on the arch-validation split with inherited supernet weights (BN recalibrated)"),
        "space": space.name, "strategy": strategy.name, "seed": settings.seed, "data": settings.data,
        "flops_max": settings.flops_max, "params_max": settings.params_max,
        "evaluated": len(result.candidates), "min_predicted_latency_ms": lows["latency"],
        "estimated_blocks": len(predictor.estimated), "table": settings.table,
        "pareto": winners if settings.pareto else [],
        "extra": {k: v for k, v in result.extra.items() if k not in ("winners",)},
        "seconds": round(time.time() - t0, 1),
    }
    run.write_json("best_arch.json", main["arch"])
    plot_winners = [{"latency_ms": w["predicted_latency_ms"], "accuracy": w["accuracy"]} for w in (winners or [main])]
    if result.candidates:
        pareto_plot(result.candidates, budgets=budgets, winners=plot_winners, path=run.path / "pareto.png",
                    title=f"{strategy.name} on {space.name} ({settings.data})")
    run.write_json("summary.json", summary)
    run.save_checkpoint({**supernet_state(), "summary": summary})
    return summary


def strategy_names() -> list[str]:
    return sorted(load_strategies())
