"""Evolution and random search act on decisions: known optimum, constraints, resume; exact bounds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwnas.errors import InputError
from hwnas.search.strategies.base import Costs
from hwnas.search.strategies.evolution import EvolutionConfig, evolve, random_search
from hwnas.space.bounds import minimize
from hwnas.space.loader import load_space

SPACE = load_space("mobilenetv2")  # 16 decisions of 6-7 options: ~1.3e13 archs
TARGET = np.array([(3 * i + 1) % n for i, n in enumerate(SPACE.num_options)])
WEIGHTS = np.arange(1, len(TARGET) + 1, dtype=float)  # a synthetic "latency": Σ weight · option index


def onemax(idx: np.ndarray) -> float:
    """Toy accuracy: the share of decisions equal to TARGET (known best: TARGET itself, score 1)."""
    return float(np.mean(np.asarray(idx) == TARGET))


def onemax_many(pool) -> list[float]:
    return [onemax(idx) for idx in pool]


COSTS = Costs(latency=lambda I: np.atleast_2d(I) @ WEIGHTS / 100.0,
              flops=lambda I: np.zeros(len(np.atleast_2d(I))), params=lambda I: np.zeros(len(np.atleast_2d(I))))


def test_evolution_finds_the_known_best_and_beats_random():
    cfg = EvolutionConfig(population=24, generations=25, top_k=8, mutation_prob=0.1)
    feasible = lambda I: np.ones(len(np.atleast_2d(I)), bool)  # noqa: E731
    state = evolve(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, config=cfg, seed=0)
    assert state["best"]["indices"] == TARGET.tolist() and state["best"]["accuracy"] == 1.0
    rnd = random_search(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, evaluations=cfg.evaluations,
                        batch=cfg.population, seed=0)
    assert len(rnd["evaluated"]) == cfg.evaluations
    assert rnd["best"]["accuracy"] < 0.75  # uniform draws match far fewer decisions


def test_constraints_hold_for_every_evaluated_candidate():
    budget = float(TARGET @ WEIGHTS / 100.0) * 0.8  # the unconstrained optimum is infeasible
    feasible = lambda I: COSTS.latency(I) <= budget  # noqa: E731
    cfg = EvolutionConfig(population=16, generations=8, top_k=6)
    for algo in ("evolve", "random"):
        if algo == "evolve":
            state = evolve(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, config=cfg, seed=1)
        else:
            state = random_search(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, evaluations=96,
                                  batch=16, seed=1)
        lat = np.array([e["latency_ms"] for e in state["evaluated"]])
        assert (lat <= budget).all() and len(state["evaluated"]) > 50
        keys = [tuple(e["indices"]) for e in state["evaluated"]]
        assert len(set(keys)) == len(keys)  # never scores the same candidate twice


def test_evolution_resumes_to_the_same_result():
    cfg = EvolutionConfig(population=10, generations=6, top_k=4)
    feasible = lambda I: np.ones(len(np.atleast_2d(I)), bool)  # noqa: E731
    snapshots = []
    full = evolve(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, config=cfg, seed=3,
                  on_generation=lambda s: snapshots.append(__import__("copy").deepcopy(s)))
    resumed = evolve(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, config=cfg, seed=3,
                     state=snapshots[2])
    assert resumed["best"] == full["best"] and resumed["evaluated"] == full["evaluated"]


def test_no_feasible_architecture():
    with pytest.raises(InputError, match="no architecture"):
        evolve(SPACE, score_many=onemax_many, feasible=lambda I: np.zeros(len(np.atleast_2d(I)), bool), costs=COSTS,
               config=EvolutionConfig(population=4, generations=1, top_k=2), seed=0)


def test_minimize_matches_brute_force():
    rng = np.random.default_rng(0)
    n = [3, 2, 4, 3, 2]
    terms = [((0, 1), rng.random((3, 2))), ((1, 2), rng.random((2, 4))), ((0, 2, 3), rng.random((3, 4, 3))),
             ((3,), rng.random(3)), ((4, 0), rng.random((2, 3))), ((), np.array(0.25))]
    best, x = minimize(terms, n, const=1.0)
    brute = min(1.0 + sum(a[tuple(c[d] for d in ds)] for ds, a in terms) for c in itertools.product(*map(range, n)))
    assert best == pytest.approx(brute)
    assert 1.0 + sum(a[tuple(x[d] for d in ds)] for ds, a in terms) == pytest.approx(best)


def test_the_first_population_starts_with_the_given_initial_candidates():
    """``initial`` (TNAS: draws from its learned sampler) comes first; infeasible and repeated entries
    are skipped and uniform feasible draws fill the population. Without it nothing changes."""
    budget = float(TARGET @ WEIGHTS / 100.0)
    feasible = lambda I: COSTS.latency(I) <= budget  # noqa: E731
    cfg = EvolutionConfig(population=6, generations=1, top_k=2)
    heavy = np.array([n - 1 for n in SPACE.num_options])  # latency above the budget
    small = np.zeros(len(TARGET), dtype=np.int64)
    start = evolve(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, config=cfg, seed=4,
                   initial=[TARGET, heavy, TARGET, small])
    first = [e["indices"] for e in start["evaluated"] if e["generation"] == 0]
    assert first[:2] == [TARGET.tolist(), small.tolist()] and len(first) == 6
    assert heavy.tolist() not in first and all(COSTS.latency(np.array(first)) <= budget)
    plain = evolve(SPACE, score_many=onemax_many, feasible=feasible, costs=COSTS, config=cfg, seed=4)
    uniform = [e["indices"] for e in plain["evaluated"] if e["generation"] == 0]
    assert first[2:] == uniform[:4]  # the same uniform draws fill the rest
