"""``spos-evolution`` and ``random``: one-shot supernet training, then search with inherited weights.

SPOS (Guo et al. 2020): train the single-path supernet with uniformly sampled paths (Sec. 3.2), or
with FairNAS strict fairness (Chu et al. 2021, Sec. 3.2) via ``--sampling fair``; optionally only on
paths whose predicted latency lies in ``[low · T, T]`` (constraint-aware training). Then evolve
under the constraints (Sec. 3.4, Alg. 1), or, for ``random``, score the same number of uniformly
drawn feasible candidates. With several budgets (``--pareto``), the supernet is trained once and
each budget gets its own search and winner ("train once, specialize many").
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import numpy as np

from hwnas.errors import InputError
from hwnas.search.strategies.base import SearchContext, SearchResult, Strategy, register_strategy
from hwnas.search.strategies.evolution import EvolutionConfig, evolve, random_search
from hwnas.supernet import SAMPLERS, constrained_uniform


class _OneShot(Strategy):
    def __init__(self, *, evolution: EvolutionConfig, sampling: str = "uniform",
                 constraint_aware: float | None = None) -> None:
        if sampling not in SAMPLERS:
            raise InputError(f"--sampling must be one of {', '.join(SAMPLERS)}, got {sampling!r}.")
        if constraint_aware is not None:
            if sampling != "uniform":
                raise InputError("--constraint-aware works with --sampling uniform only (fair paths are permutations).")
            if not 0.0 <= constraint_aware < 1.0:
                raise InputError(f"--constraint-aware must be in [0, 1), got {constraint_aware}.")
        self.evolution, self.sampling, self.constraint_aware = evolution, sampling, constraint_aware

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        pass

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "_OneShot":
        if args.sampling == "fair" and getattr(args, "weight_sharing", "separate") == "entangled":
            raise InputError("--sampling fair needs --weight-sharing separate: with entangled sharing candidates of a "
                             "layer share one module, so a step trains it several times instead of every candidate "
                             "exactly once (FairNAS strict fairness, Chu et al. 2021, Sec. 3.2, Fig. 2).")
        return cls(evolution=EvolutionConfig.from_args(args), sampling=args.sampling,
                   constraint_aware=args.constraint_aware)

    def settings(self) -> dict[str, Any]:
        return {"evolution": self.evolution.to_json(), "sampling": self.sampling,
                "constraint_aware": self.constraint_aware}

    def _sampler(self, ctx: SearchContext):
        base = SAMPLERS[self.sampling](ctx.space)
        if self.constraint_aware is None:
            return base
        c = ctx.constraints
        low = self.constraint_aware * c.latency_ms

        def accept(idx: np.ndarray) -> np.ndarray:
            lat, flops, params = ctx.costs.all(idx)
            return (lat >= low) & c.feasible(latency=lat, flops=flops, params=params)

        return constrained_uniform(ctx.space, accept=accept)

    def search(self, ctx: SearchContext) -> SearchResult:
        ctx.train_weights(self._sampler(ctx))
        budgets = list(ctx.budgets)
        done: list[dict[str, Any]] = list((ctx.state or {}).get("strategy", {}).get("budgets_done", []))
        current = (ctx.state or {}).get("strategy", {}).get("current")
        candidates: list[dict[str, Any]] = [c for d in done for c in d["evaluated"]]
        for i, budget in enumerate(budgets):
            if i < len(done):
                continue
            constraints = replace(ctx.constraints, latency_ms=budget)

            def feasible(idx: np.ndarray, constraints=constraints) -> np.ndarray:
                lat, flops, params = ctx.costs.all(idx)
                return constraints.feasible(latency=lat, flops=flops, params=params)

            def on_generation(state: dict[str, Any], i=i, budget=budget) -> None:
                ctx.run.append_history({"phase": self.name, "budget_ms": budget, **state["history"]})
                ctx.checkpoint({"budgets_done": done, "current": state})
                ctx.run.crash_point("generation")

            state = self._run(ctx, feasible, current, on_generation)
            current = None
            done.append({"budget_ms": budget, "best": state["best"], "evaluated": state["evaluated"]})
            candidates += state["evaluated"]
            ctx.checkpoint({"budgets_done": done, "current": None})
        main = done[0]
        winners = [{"budget_ms": d["budget_ms"], "indices": d["best"]["indices"], "accuracy": d["best"]["accuracy"]}
                   for d in done]
        return SearchResult(best=np.asarray(main["best"]["indices"], dtype=np.int64), score=main["best"]["accuracy"],
                            candidates=candidates, extra={"winners": winners,
                                                          "evaluated_per_budget": [len(d["evaluated"]) for d in done]})

    def _run(self, ctx, feasible, state, on_generation) -> dict[str, Any]:
        raise NotImplementedError


@register_strategy("spos-evolution")
class SposEvolution(_OneShot):
    """Single Path One-Shot: supernet training with uniform (or fair) paths, then evolution."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        EvolutionConfig.add_arguments(parser)
        parser.add_argument("--sampling", choices=sorted(SAMPLERS), default="uniform",
                            help="supernet path sampling: uniform (SPOS) or fair (FairNAS strict fairness)")
        parser.add_argument("--constraint-aware", type=float, default=None, metavar="LOW",
                            help="train only paths with predicted latency in [LOW*T, T] (and within FLOPs/params)")

    def _run(self, ctx, feasible, state, on_generation):
        return evolve(ctx.space, score_many=ctx.score_many, feasible=feasible, costs=ctx.costs, config=self.evolution,
                      seed=ctx.seed, state=state, on_generation=on_generation)


@register_strategy("random")
class RandomSearch(_OneShot):
    """The baseline: same supernet training, then as many uniformly drawn feasible candidates as
    ``spos-evolution`` scores with the same flags (population × generations)."""

    def _run(self, ctx, feasible, state, on_generation):
        return random_search(ctx.space, score_many=ctx.score_many, feasible=feasible, costs=ctx.costs,
                             evaluations=self.evolution.evaluations, batch=self.evolution.population,
                             seed=ctx.seed, state=state, on_generation=on_generation)
