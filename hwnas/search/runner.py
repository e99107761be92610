"""``hwnas search``: load everything, check the budget is feasible, run a strategy, write the run.

The run directory (``hwnas.train.runs``) holds the resolved settings, the history, the atomic checkpoint,
``summary.json``, ``best_arch.json`` and ``pareto.png``. ``--resume`` continues from the checkpoint
and ends with the same result as an uninterrupted run with the same seed.

The budget is absolute (``--latency-ms T``) or relative (``--latency-rel REF:FACTOR``: T = FACTOR ×
the table's prediction of REF at the run's resolution, width and classes). After the strategy, the
measured final selection (``hwnas.search.selection``) times the best ``--verify`` candidates on the
table's backend side by side with the reference and picks the most accurate one that fits
*measured*; when the table cannot be measured here (or ``--verify 0``) the result is predicted only
and the summary says so. The strategy's result is checkpointed before verification, and the
verification rows after each chunk, so ``--resume`` redoes neither.

Under ``torchrun`` (``dist``, ``hwnas.train.distributed``) every process builds the same supernet on
its device, trains it on its share of each global batch, scores its share of each pool of
candidates; rank 0 alone writes the run and times the verified candidates (timing one device from
several processes at once would measure their contention), and hands the selection to the others.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.jsonio import read_json
from hwnas.latency import BatchPredictor, LatencyModel, LatencyTable
from hwnas.plots import pareto_plot
from hwnas.profile import BackendConfig, SteadySettings, check_measurable, measure_archs_side_by_side
from hwnas.safeio import short
from hwnas.search.objective import Constraints
from hwnas.search.selection import (Budget, NoCandidateFits, Selection, SelectionConfig, select_measured,
                                    selection_fields, tie_margin)
from hwnas.search.strategies import SearchContext, Strategy, load_strategies
from hwnas.search.strategies.base import Costs, SearchResult
from hwnas.space import ArchSettings, CostCounter, SearchSpace, load_space, minimize
from hwnas.supernet import SuperNet, SupernetEvaluator, SupernetTrainConfig, train_supernet
from hwnas.train import SINGLE_PROCESS, Distributed, RunDir, load_dataset


@dataclass(frozen=True)
class SearchSettings:
    """Resolved settings of a search (recorded in ``config.json``).

    Exactly one of ``latency_ms`` (absolute budget, ms) and ``latency_rel`` (``REF:FACTOR``) is set.
    ``verify`` (0: off), ``verify_chunk`` and ``verify_steady`` configure measured final selection.
    """

    space: str
    strategy: str
    table: str
    latency_ms: float | None = None
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
    latency_rel: str | None = None
    verify: int = 8
    verify_chunk: int = 8
    verify_steady: SteadySettings = field(default_factory=SteadySettings)

    def selection(self) -> SelectionConfig:
        return SelectionConfig(verify=self.verify, chunk=self.verify_chunk, steady=self.verify_steady)


def parse_latency_rel(text: str) -> tuple[str, float]:
    """``REF:FACTOR`` → (REF, FACTOR); FACTOR in (0, 2] (``InputError`` naming ``--latency-rel``)."""
    ref, sep, factor = str(text).rpartition(":")
    try:
        value = float(factor)
    except ValueError:
        value = float("nan")
    if not sep or not ref or not 0 < value <= 2:
        raise InputError(f"--latency-rel takes REF:FACTOR (a preset or arch file, and a factor in (0, 2]), "
                         f"got {short(text)}.")
    return ref, value


def reference_arch(space: SearchSpace, ref: str, *, settings: ArchSettings) -> dict[str, Any]:
    """The reference of a relative budget: a preset of ``space`` or an arch file, at the run's settings."""
    kw = {"resolution": settings.resolution, "width_mult": settings.width_mult, "num_classes": settings.num_classes}
    if ref in space.presets:
        return space.preset(ref, **kw)
    if not Path(ref).is_file():
        raise InputError(f"--latency-rel: {short(ref)} is neither a preset of space {space.name} (presets: "
                         f"{', '.join(space.presets) or 'none'}) nor an arch file.")
    raw = read_json(ref, what="--latency-rel arch file")
    if not isinstance(raw, dict) or raw.get("space") != space.name:
        raise InputError(f"--latency-rel arch file {ref} is not an architecture of space {space.name} "
                         f"(field 'space').")
    arch = space.validate_arch(raw, where=f"--latency-rel arch file {ref}")
    return space.make_arch(arch["choices"], **kw)


def resolve_budget(settings: SearchSettings, space: SearchSpace, model: LatencyModel, *, arch_settings: ArchSettings,
                   predictor) -> tuple[Budget, dict[str, Any]]:
    """The run's budget (ms) and the reference it is measured against (with its architecture).

    Relative: T = FACTOR × the table's prediction of REF. Absolute: the reference is the space's
    first preset (else its smallest-latency architecture), timed only to report the table's drift.
    """
    if (settings.latency_ms is None) == (settings.latency_rel is None):
        raise InputError("give exactly one latency budget: --latency-ms MS or --latency-rel REF:FACTOR.")
    if settings.latency_rel is not None:
        name, factor = parse_latency_rel(settings.latency_rel)
        arch = reference_arch(space, name, settings=arch_settings)
        ref_ms = model.predict(arch, space=space).latency_ms
        return Budget(latency_ms=factor * ref_ms, reference=name, reference_predicted_ms=ref_ms, factor=factor), arch
    kw = {"resolution": arch_settings.resolution, "width_mult": arch_settings.width_mult,
          "num_classes": arch_settings.num_classes}
    if space.presets:
        name, arch = space.presets[0], space.preset(space.presets[0], **kw)
    else:
        name, arch = "smallest", space.decode(smallest(predictor, "latency")[1], **kw)
    return Budget(latency_ms=float(settings.latency_ms), reference=name,
                  reference_predicted_ms=model.predict(arch, space=space).latency_ms), arch


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON types (numpy scalars and arrays converted), for checkpoints."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


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


def check_feasible(predictor, constraints: Constraints, budgets: list[float], *,
                   latency_flag: str = "--latency-ms") -> dict[str, float]:
    """Raises ``InputError`` with the smallest achievable value when a bound cannot be met."""
    lows = {}
    checks = [("latency", min(budgets), latency_flag, "ms")]
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


def measurable(table: LatencyTable, *, verify: int, commands: Any) -> str | None:
    """Why measured selection cannot run (``--verify 0``, a synthetic/imported table, a remote one
    without the user's commands), or None when it can."""
    if verify == 0:
        return "--verify 0"
    try:
        check_measurable(table, commands=commands, what="measured selection")
    except InputError as exc:
        return str(exc)
    return None


def run_search(settings: SearchSettings, strategy: Strategy, *, out: str, resume: bool,
               commands: Any = None, dist: Distributed = SINGLE_PROCESS) -> dict[str, Any]:
    """Runs a search and returns its summary (also written to ``out/summary.json``).

    Args:
        settings: The resolved settings (``config.json``).
        strategy: The configured strategy.
        out: The run directory.
        resume: Continue the run in ``out`` from its checkpoint.
        commands: The user's remote-device commands (``RemoteCommands``) for measured selection on a
            ``remote`` table; never recorded.
        dist: The processes of a data-parallel run (``settings.train.batch_size`` is the global batch).

    Raises:
        NoCandidateFits: (a ``RuntimeError``, exit 1) when no verified candidate meets the budget
            measured; ``verified.json`` then holds the rows and no winner is written.
    """
    t0 = time.time()
    space: SearchSpace = load_space(settings.space)
    table = LatencyTable.load(settings.table)
    model = LatencyModel.load(settings.table)
    resolution = _table_setting(table, "resolution", settings.resolution, space.spec.resolution)
    width_mult = float(_table_setting(table, "width_mult", settings.width_mult, 1.0))
    table.check_resolution(resolution)
    selection_config = settings.selection()
    selection_config.validate()
    ds = load_dataset(settings.data, seed=settings.seed, limit=settings.data_limit)
    num_classes = ds.num_classes
    arch_settings = ArchSettings(resolution=resolution, width_mult=width_mult, num_classes=num_classes)
    predictor = BatchPredictor.build(model, space, resolution=resolution, width_mult=width_mult, num_classes=num_classes)
    if predictor.estimated and dist.is_main:
        print(f"hwnas: {len(predictor.estimated)} block(s) of the space are not in the table and are estimated "
              f"by the per-block regressor.", file=sys.stderr)
    budget, ref_arch = resolve_budget(settings, space, model, arch_settings=arch_settings, predictor=predictor)
    constraints = Constraints(latency_ms=budget.latency_ms, flops_max=settings.flops_max,
                              params_max=settings.params_max)
    budgets = [budget.latency_ms] + [b for b in settings.pareto if b != budget.latency_ms]
    lows = check_feasible(predictor, constraints, budgets,
                          latency_flag="--latency-rel budget" if budget.relative else "--latency-ms")
    off = measurable(table, verify=settings.verify, commands=commands)
    if off is not None and settings.verify and dist.is_main:
        print(f"hwnas: measured selection is off ({off}); the result will be predicted only.", file=sys.stderr)
    config = {**asdict(settings), "pareto": list(settings.pareto), "resolved": {
        "resolution": resolution, "width_mult": width_mult, "num_classes": num_classes,
        "latency_budget_ms": budget.latency_ms, "reference": budget.reference, "budget_factor": budget.factor,
        "reference_predicted_ms": budget.reference_predicted_ms,
        "min_latency_ms": lows["latency"], "estimated_blocks": len(predictor.estimated)},
        "launch": dist.record()}
    run = RunDir(out, config=config, resume=resume, dist=dist)
    state = run.load_checkpoint() if resume else None
    if state is not None and "summary" in state:
        return state["summary"]

    torch.manual_seed(settings.seed)
    supernet = SuperNet(space, resolution=resolution, width_mult=width_mult, num_classes=num_classes,
                        sharing=settings.weight_sharing)
    supernet.to(dist.device, memory_format=torch.channels_last)
    if state is not None and "supernet" in state:
        supernet.load_state_dict(state["supernet"])
    costs = Costs(latency=predictor.latency, flops=predictor.flops, params=predictor.params)
    train_state: dict[str, Any] = dict((state or {}).get("supernet_train", {}))

    def supernet_state() -> dict[str, Any]:
        return {"phase": "search", "supernet": supernet.state_dict(), "supernet_train": train_state}

    def train_weights(sampler, *, on_epoch=None, extra_state=dict) -> None:
        final = train_supernet(supernet, ds, sampler, config=settings.train, seed=settings.seed, run=run,
                               state=state, on_epoch=on_epoch, extra_state=extra_state)
        train_state.update(final)

    if state is not None and "search_result" in state:  # killed during verification: the strategy is done
        done = state["search_result"]
        result = SearchResult(best=np.asarray(done["best"], dtype=np.int64), score=float(done["score"]),
                              candidates=done["candidates"], extra=done["extra"])
    else:
        evaluator = SupernetEvaluator(supernet, ds, bn_batches=settings.bn_batches, seed=settings.seed, dist=dist)
        ctx = SearchContext(space=space, constraints=constraints, costs=costs, seed=settings.seed, run=run,
                            state=state, train_weights=train_weights, score=evaluator.score, budgets=tuple(budgets),
                            settings=arch_settings, predictor=predictor, table=table, dataset=ds,
                            train_config=settings.train, supernet=supernet, supernet_state=supernet_state,
                            forget_scores=evaluator.cache.clear, score_many=evaluator.score_many)
        result = strategy.search(ctx)
    search_state = {**supernet_state(), "phase": "verify", "search_result": _plain({
        "best": [int(i) for i in result.best], "score": result.score, "candidates": result.candidates,
        "extra": result.extra})}
    if off is None and "verification" not in (state or {}):
        run.save_checkpoint(search_state)
        run.crash_point("verify_start")

    counter = CostCounter()

    def decode(indices) -> dict[str, Any]:
        return space.decode(np.asarray(indices), resolution=resolution, width_mult=width_mult, num_classes=num_classes)

    def describe(indices, accuracy: float, budget_ms: float) -> dict[str, Any]:
        arch = decode(indices)
        pred = model.predict(arch, space=space)
        cost = counter.blocks(space.resolve(arch))
        met = bool(replace(constraints, latency_ms=budget_ms).feasible(latency=pred.latency_ms, flops=cost.flops,
                                                                    params=cost.params))
        return {"arch": arch, "latency_budget_ms": budget_ms, "predicted_latency_ms": pred.latency_ms,
                "flops": cost.flops, "params": cost.params, "accuracy": accuracy, "constraints_met": met}

    best_row = describe(result.best, result.score, budget.latency_ms)
    best = {"indices": [int(i) for i in result.best], "accuracy": result.score,
            "latency_ms": best_row["predicted_latency_ms"], "flops": best_row["flops"], "params": best_row["params"]}
    selection = None
    margin = tie_margin(best["accuracy"], n=len(ds.arch))  # accuracy scored on the arch split
    if off is None:
        selection = dist.agree(lambda: _verify(
            result, best=best, budget=budget, ref_arch=ref_arch, decode=decode, constraints=constraints, space=space,
            table=table, commands=commands, config=selection_config, run=run, state=state, search_state=search_state,
            seed=settings.seed, accuracy_margin=margin))
    win = selection.winner if selection is not None else None
    if win is None or win["indices"] == best["indices"]:
        main = best_row
    else:
        main = describe(win["indices"], win["accuracy"], budget.latency_ms)
    if win is not None:  # judged on the measured value (FLOPs and params are exact counts)
        main["constraints_met"] = bool(replace(constraints, latency_ms=None).feasible(
            latency=0.0, flops=main["flops"], params=main["params"])) and bool(win["within_budget"])
    winners = [describe(w["indices"], w["accuracy"], w["budget_ms"]) for w in result.extra.get("winners", [])]
    summary = {
        **main,
        **selection_fields(selection, budget=budget, off=off),
        "accuracy_kind": result.extra.get(
            "accuracy_kind", "top-1 on the arch-validation split with inherited supernet weights (BN recalibrated)"),
        "space": space.name, "strategy": strategy.name, "seed": settings.seed, "data": settings.data,
        "flops_max": settings.flops_max, "params_max": settings.params_max,
        "evaluated": len(result.candidates), "min_predicted_latency_ms": lows["latency"],
        "selection_accuracy_margin": margin if selection is not None else None,
        "estimated_blocks": len(predictor.estimated), "table": settings.table, "launch": dist.record(),
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


def _verify(result: SearchResult, *, best: dict[str, Any], budget: Budget, ref_arch: dict[str, Any], decode,
            constraints: Constraints, space: SearchSpace, table: LatencyTable, commands: Any,
            config: SelectionConfig, run: RunDir, state: dict[str, Any] | None, search_state: dict[str, Any],
            seed: int, accuracy_margin: float) -> Selection:
    """Measured final selection of a run (``hwnas.search.selection``), its rows saved after each chunk;
    ``accuracy_margin``: how much more accurate than ``best`` a candidate must be to come first."""
    backend = BackendConfig.from_header(table.device, commands=commands, origin=f"latency table {table.path}")

    def measure(archs, reference):
        return measure_archs_side_by_side(space, archs, config=backend, settings=config.steady, reference=reference,
                                          seed=seed)

    def feasible(c) -> bool:
        return bool(constraints.feasible(latency=c["latency_ms"], flops=c["flops"], params=c["params"]))

    def save(rows) -> None:
        run.save_checkpoint({**search_state, "verification": _plain(rows)})
        run.crash_point("verify_chunk")

    if not (state or {}).get("verification"):
        print(f"hwnas: measured selection: timing up to {config.verify} candidate(s) side by side with "
              f"{budget.reference} on {backend.backend}", file=sys.stderr)
    try:
        return select_measured(result.candidates, best=best, feasible=feasible, budget=budget, decode=decode,
                               reference_arch=ref_arch, measure=measure, config=config,
                               done=(state or {}).get("verification", ()), on_chunk=save,
                               accuracy_margin=accuracy_margin)
    except NoCandidateFits as exc:
        run.write_json("verified.json", selection_fields(exc.selection, budget=budget, off=None))
        raise


def strategy_names() -> list[str]:
    return sorted(load_strategies())
