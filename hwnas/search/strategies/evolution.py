"""Evolutionary architecture search under hard constraints (SPOS, Guo et al. 2020, Sec. 3.4, Alg. 1).

For T generations: score the current population (P candidates), keep the top-k of everything seen,
and make the next population from the top-k by crossover (P/2) and mutation (P/2, each decision
redrawn with probability 0.1). Every candidate satisfies the constraints before it is scored:
infeasible or already-seen children are redrawn (SPOS: "the mutation and crossover processes can be
directly controlled to generate proper candidates to satisfy the constraints"). Random search is the
baseline: the same number of scored candidates, drawn uniformly among feasible ones.

The algorithms act on option-index vectors only; the state after each generation is plain data, so
a resumed search repeats an uninterrupted one (each generation draws from its own (seed, gen) stream).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from hwnas.errors import InputError
from hwnas.search.strategies.base import Costs
from hwnas.space import SearchSpace


@dataclass(frozen=True)
class EvolutionConfig:
    """SPOS evolution settings (paper defaults: P = 50, T = 20, k = 10, mutation probability 0.1)."""

    population: int = 50
    generations: int = 20
    top_k: int = 10
    mutation_prob: float = 0.1
    max_tries: int = 200

    def __post_init__(self) -> None:
        if self.population < 2 or self.generations < 1 or not 1 <= self.top_k <= self.population:
            raise InputError("--population must be >= 2, --generations >= 1 and 1 <= --top-k <= --population.")

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--population", type=int, default=cls.population, help="candidates per generation (SPOS: 50)")
        p.add_argument("--generations", type=int, default=cls.generations, help="generations (SPOS: 20)")
        p.add_argument("--top-k", type=int, default=cls.top_k, help="parents kept (SPOS: 10)")
        p.add_argument("--mutation-prob", type=float, default=cls.mutation_prob, help="per-decision mutation probability")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "EvolutionConfig":
        return cls(population=args.population, generations=args.generations, top_k=args.top_k,
                   mutation_prob=args.mutation_prob)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def evaluations(self) -> int:
        """Scored candidates of a full run (T generations of P)."""
        return self.population * self.generations


#: Accuracies of a pool of candidates, in order (``SearchContext.score_many``: shared out among the
#: processes of a data-parallel run).
ScoreMany = Callable[[Sequence[np.ndarray]], list[float]]
Feasible = Callable[[np.ndarray], np.ndarray]


def _rng(seed: int, gen: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, gen])


def _key(idx: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in idx)


def _fill(make: Callable[[], np.ndarray], n: int, *, feasible: Feasible, seen: set, max_tries: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    tries = 0
    while len(out) < n and tries < max_tries * n:
        tries += 1
        child = make()
        k = _key(child)
        if k in seen or not bool(feasible(child[None])[0]):
            continue
        seen.add(k)
        out.append(child)
    return out


def _record(idx: np.ndarray, acc: float, costs: Costs, generation: int) -> dict[str, Any]:
    lat, flops, params = (float(v[0]) for v in costs.all(idx[None]))
    return {"indices": idx.tolist(), "accuracy": acc, "latency_ms": lat, "flops": flops, "params": params,
            "generation": generation}


def evolve(space: SearchSpace, *, score_many: ScoreMany, feasible: Feasible, costs: Costs, config: EvolutionConfig,
           seed: int, state: dict[str, Any] | None = None,
           on_generation: Callable[[dict[str, Any]], None] | None = None,
           initial: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """SPOS evolutionary search (Alg. 1). Returns the final state with ``best`` and ``evaluated``.

    Args:
        space: The space (mutation and crossover on decisions).
        score_many: Accuracies of a generation's candidates, in order (higher is better).
        feasible: Vectorized constraint check.
        costs: Predicted costs (recorded with each candidate).
        config: Evolution settings.
        seed: Seed.
        state: State of an interrupted run (from ``on_generation``).
        on_generation: Called with the state after each generation (checkpointing).
        initial: Option-index vectors the first population starts with (SPOS draws it uniformly;
            TNAS, Sec. 4.2, from its learned sampler); infeasible or repeated ones are skipped and
            uniform feasible draws fill the rest. Unused when resuming.
    """
    if state is None:
        rng = _rng(seed, 0, 11)
        seen: set = set()
        queue = [np.asarray(p, dtype=np.int64) for p in reversed(initial)]
        pop = _fill(lambda: queue.pop() if queue else space.encode(space.sample(rng)), config.population,
                    feasible=feasible, seen=seen, max_tries=config.max_tries)
        if not pop:
            raise InputError("no architecture of the space satisfies the constraints.")
        state = {"generation": 0, "population": [p.tolist() for p in pop], "topk": [], "evaluated": []}
    bar = tqdm(total=config.generations, initial=state["generation"], desc="evolution", unit="gen", leave=False,
               dynamic_ncols=True)
    while state["generation"] < config.generations:
        gen = state["generation"]
        scored = []
        population = [np.asarray(p, dtype=np.int64) for p in state["population"]]
        for p, idx, acc in zip(state["population"], population, score_many(population)):
            state["evaluated"].append(_record(idx, acc, costs, gen))
            scored.append((p, acc))
        pool = {tuple(p): a for p, a in [(tuple(t[0]), t[1]) for t in state["topk"]] + [(tuple(p), a) for p, a in scored]}
        ranked = sorted(pool.items(), key=lambda kv: (-kv[1], kv[0]))[: config.top_k]
        state["topk"] = [[list(k), a] for k, a in ranked]
        parents = [np.asarray(k, dtype=np.int64) for k, _ in ranked]
        rng = _rng(seed, gen + 1, 13)
        seen = {_key(np.asarray(e["indices"])) for e in state["evaluated"]}
        n_cross = config.population // 2

        def cross() -> np.ndarray:
            a, b = rng.choice(len(parents), size=2, replace=len(parents) < 2)
            take = rng.random(len(parents[a])) < 0.5
            return np.where(take, parents[b], parents[a])

        def mutate() -> np.ndarray:
            p = parents[int(rng.integers(len(parents)))]
            arch = space.decode(p)
            return space.encode(space.mutate(arch, rng, prob=config.mutation_prob))

        children = _fill(cross, n_cross, feasible=feasible, seen=seen, max_tries=config.max_tries)
        children += _fill(mutate, config.population - len(children), feasible=feasible, seen=seen,
                          max_tries=config.max_tries)
        state["population"] = [c.tolist() for c in children]
        state["generation"] = gen + 1
        best = state["topk"][0]
        state["history"] = {"generation": gen, "best_accuracy": best[1],
                            "mean_accuracy": float(np.mean([a for _, a in scored])),
                            "best_latency_ms": float(costs.latency(np.asarray([best[0]]))[0]),
                            "mean_latency_ms": float(np.mean([e["latency_ms"] for e in state["evaluated"][-len(scored):]])),
                            "evaluated": len(state["evaluated"])}
        bar.update(1)
        if on_generation is not None:
            on_generation(state)
        if not children:
            break
    bar.close()
    best_idx, best_acc = state["topk"][0]
    state["best"] = {"indices": best_idx, "accuracy": best_acc}
    return state


def random_search(space: SearchSpace, *, score_many: ScoreMany, feasible: Feasible, costs: Costs, evaluations: int,
                  batch: int, seed: int, state: dict[str, Any] | None = None,
                  on_generation: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Uniform random search among feasible architectures, ``evaluations`` scored in rounds of ``batch``."""
    if state is None:
        state = {"generation": 0, "evaluated": [], "topk": []}
    rounds = -(-evaluations // batch)
    bar = tqdm(total=rounds, initial=state["generation"], desc="random", unit="round", leave=False, dynamic_ncols=True)
    while state["generation"] < rounds:
        gen = state["generation"]
        rng = _rng(seed, gen, 17)
        seen = {_key(np.asarray(e["indices"])) for e in state["evaluated"]}
        n = min(batch, evaluations - len(state["evaluated"]))
        picks = _fill(lambda: space.encode(space.sample(rng)), n, feasible=feasible, seen=seen, max_tries=200)
        if not picks and not state["evaluated"]:
            raise InputError("no architecture of the space satisfies the constraints.")
        accs = score_many(picks) if picks else []
        for idx, acc in zip(picks, accs):
            state["evaluated"].append(_record(idx, acc, costs, gen))
        best = max(state["evaluated"], key=lambda e: (e["accuracy"], [-v for v in e["indices"]]))
        state["topk"] = [[best["indices"], best["accuracy"]]]
        state["generation"] = gen + 1
        state["history"] = {"generation": gen, "best_accuracy": best["accuracy"],
                            "mean_accuracy": float(np.mean(accs)) if accs else None,
                            "best_latency_ms": best["latency_ms"], "evaluated": len(state["evaluated"])}
        bar.update(1)
        if on_generation is not None:
            on_generation(state)
        if not picks:
            break
    bar.close()
    state["best"] = {"indices": state["topk"][0][0], "accuracy": state["topk"][0][1]}
    return state
