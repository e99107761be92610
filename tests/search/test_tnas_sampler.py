"""TNAS's learned sampler Γ (Yan et al. 2021, Eq. 1, 11): the mixture at the stated ε (chi-square on
10k draws), ε = 0 is SPOS's uniform sampler, the greedy repair by hand, infeasible decodes never
reach the search, the schedule of updates, and a state that restores the same draws.

Costs are hand-made on the toy space (3 decisions: 2, 2 and 3 options; latency = Σ per-option ms)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from hwnas.errors import InputError
from hwnas.search.objective import Constraints
from hwnas.search.strategies.base import Costs
from hwnas.search.tnas_sampler import LearnedSampler, Schedule, repair, violation
from hwnas.search.tnas_vae import VaeConfig
from hwnas.space import load_space
from hwnas.supernet import step_rng, uniform_paths
from hwnas.train.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import TOY_SPACE

SPACE = load_space(str(TOY_SPACE))
MS = [np.array([1.0, 3.0]), np.array([1.0, 2.0]), np.array([1.0, 2.0, 4.0])]  # ms per option, per decision
ALL = np.array(list(itertools.product(*[range(n) for n in SPACE.num_options])))  # the 12 architectures
BIG = np.array([1, 1, 2])  # 3 + 2 + 4 = 9 ms, the slowest


def _lat(idx: np.ndarray) -> np.ndarray:
    idx = np.atleast_2d(idx)
    return sum(m[idx[:, d]] for d, m in enumerate(MS))


COSTS = Costs(latency=_lat, flops=lambda i: 10.0 * _lat(i), params=lambda i: np.zeros(len(np.atleast_2d(i))))


def _sampler(budget: float = 100.0, **schedule) -> LearnedSampler:
    return LearnedSampler.build(SPACE, schedule=Schedule(**schedule), vae_config=VaeConfig(steps=30), seed=0,
                                costs=COSTS, constraints=Constraints(latency_ms=budget))


def _teach(s: LearnedSampler, arch: np.ndarray, *, eps: float) -> None:
    s.vae.fit(np.stack([arch] * 8), generator=torch.Generator().manual_seed(1))
    s.vae.eval()
    s.trained, s.eps = True, eps


def test_gamma_mixes_uniform_and_the_vae_at_the_stated_eps():
    s = _sampler()
    _teach(s, BIG, eps=0.3)
    logp = s.vae.log_probs(np.random.default_rng(9).standard_normal((50_000, s.vae_config.latent)))
    logp = logp.astype(np.float64)
    p_theta = np.array([np.exp(logp[:, [0, 1, 2], a].sum(-1)).mean() for a in ALL])  # E_z Π_d p(o_d | z)
    assert p_theta.sum() == pytest.approx(1.0, abs=1e-3) and p_theta.max() > 0.3
    n = 10_000
    draws = np.concatenate([s(step_rng(0, i)) for i in range(n)])
    counts = np.array([(draws == a).all(1).sum() for a in ALL])

    def expected(eps: float) -> np.ndarray:  # n · Γ(α) = n · ((1 − ε) / 12 + ε · p_θ(α))
        p = (1 - eps) / len(ALL) + eps * p_theta
        return n * p / p.sum()

    assert stats.chisquare(counts, expected(0.3)).pvalue > 1e-3
    assert stats.chisquare(counts, expected(0.2)).pvalue < 1e-6  # the test tells ε = 0.2 from 0.3
    share = s.counts.paths_vae / s.counts.paths
    assert s.counts.paths == n and abs(share - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)


def test_eps_zero_or_an_untrained_vae_draws_spos_uniform_paths():
    uniform = uniform_paths(SPACE)
    fresh = _sampler()
    fresh.eps = 1.0  # nothing learned yet: uniform all the same
    taught = _sampler()
    _teach(taught, BIG, eps=0.0)
    for i in range(200):
        want = uniform(step_rng(3, i))
        assert np.array_equal(fresh(step_rng(3, i)), want) and np.array_equal(taught(step_rng(3, i)), want)
    assert fresh.counts.paths_vae == taught.counts.paths_vae == 0


def test_repair_takes_the_move_that_most_reduces_the_excess_then_the_likeliest():
    logp = np.log(np.array([[0.5, 0.5, 1e-9], [0.4, 0.6, 1e-9], [0.2, 0.7, 0.1]]))
    # budget 6: from 9 ms, only l3 -> option 0 (6 ms) reaches it; excess of the others 1/6 and 2/6
    assert repair(BIG, logp, num_options=SPACE.num_options, costs=COSTS,
                  constraints=Constraints(latency_ms=6.0)).tolist() == [1, 1, 0]
    # budget 7: l1 -> 0, l3 -> 0 and l3 -> 1 all fit; p_θ prefers l3 = option 1
    assert repair(BIG, logp, num_options=SPACE.num_options, costs=COSTS,
                  constraints=Constraints(latency_ms=7.0)).tolist() == [1, 1, 1]
    # two bounds: FLOPs ≤ 50 (5 ms) needs two moves: l3 -> 0 (excess 0.2, the least), then l1 -> 0 or
    # l2 -> 0 (both feasible; l1's option 0 is the likelier)
    two = Constraints(latency_ms=8.0, flops_max=50.0)
    assert violation(np.array([9.0]), np.array([90.0]), np.array([0.0]), two) == pytest.approx(1 / 8 + 0.8)
    assert repair(BIG, logp, num_options=SPACE.num_options, costs=COSTS, constraints=two).tolist() == [0, 1, 0]
    # 3 ms is the least there is: stuck
    stuck = Constraints(latency_ms=2.5)
    assert repair(BIG, logp, num_options=SPACE.num_options, costs=COSTS, constraints=stuck) is None


def test_infeasible_decodes_never_reach_the_search():
    s = _sampler(budget=6.0, tries=2, pool=4, topk=3)
    _teach(s, BIG, eps=1.0)  # p_θ now draws the 9-ms architecture, over the 6-ms budget
    first = s.initial_population(6)
    asked: list[list[int]] = []
    s.update(1, score_many=lambda pool: [asked.append([int(v) for v in idx]) or float(-_lat(idx)[0]) for idx in pool])
    paths = np.concatenate([s(step_rng(0, i)) for i in range(100)])
    for group in (np.array(first), np.array(asked), paths):
        assert len(group) and (_lat(group) <= 6.0).all()
    c = s.counts
    assert c.infeasible > 0 and c.repaired > 0 and c.repaired + c.dropped == c.infeasible
    assert c.decodes >= len(first) + c.paths_vae and c.paths_vae > 50  # ε = 1: p_θ proposed the paths


def test_updates_follow_the_interval_and_keep_the_best_topk():
    s = _sampler(eps_inc=0.25, interval=2, pool=3, topk=2)
    asked: dict[tuple, float] = {}

    def score(idx: np.ndarray) -> float:  # the fastest architectures are "best"
        asked[tuple(int(v) for v in idx)] = float(-_lat(idx)[0])
        return asked[tuple(int(v) for v in idx)]

    forgotten = []
    rows = [s.end_epoch(e, total=5, score_many=lambda pool: [score(i) for i in pool], forget=lambda: forgotten.append(e)) for e in range(1, 6)]
    assert forgotten == [2, 4, 5] and s.updates == 3
    assert [r.get("tnas_scored") for r in rows] == [None, 3, None, 5, 5]  # pool, then pool + top-k
    assert [r["tnas_eps"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rows[-1]["tnas_next_eps"] == 1.0 and s.evaluations == 13
    best = sorted(asked.items(), key=lambda kv: (-kv[1], kv[0]))[:2]  # static scores: the top-k of all
    assert s.data == [[list(k), a] for k, a in best]
    assert all(k in rows[1] for k in ("tnas_vae_kl", "tnas_vae_recon", "tnas_share_vae"))
    with pytest.raises(InputError, match="--tnas-eps-inc"):
        Schedule(eps_inc=1.5)


def test_the_state_restores_the_same_draws(tmp_path):
    s = _sampler(budget=7.0)
    _teach(s, BIG, eps=0.6)
    s.data = [[[0, 0, 0], 0.5]]
    [s(step_rng(1, i)) for i in range(20)]
    save_checkpoint(tmp_path / "c.pt", {"strategy": {"tnas": s.state()}})  # the run's checkpoint format
    back = LearnedSampler.build(SPACE, schedule=s.schedule, vae_config=s.vae_config, seed=0, costs=COSTS,
                                constraints=s.constraints,
                                state=load_checkpoint(tmp_path / "c.pt")["strategy"]["tnas"])
    assert back.counts == s.counts and back.data == s.data and back.eps == s.eps
    for i in range(20, 60):
        assert np.array_equal(back(step_rng(1, i)), s(step_rng(1, i)))
    assert [a.tolist() for a in back.initial_population(4)] == [a.tolist() for a in s.initial_population(4)]
