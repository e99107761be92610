"""TNAS's learned architecture distribution Γ(α) (Yan et al. 2021, Sec. 3.1, 4.2-4.3; Eq. 1, 11, 12).

``LearnedSampler`` is the supernet's path sampler of TNAS-OS, Eq. 11:

    Γ(α) = (1 − ε) · U(α) + ε · p_θ(α | z),

each path drawn from p_θ (the VAE decoder, ``hwnas.search.tnas_vae``) with probability ε and
uniformly otherwise. ε is ``min(1, ε_inc · e)`` during epoch e + 1 (e epochs done; Sec. 5.3 and
Tables 4-5: ε_inc "controls the rate of sampling strategy from purely random distribution to
absolute VAE generation"). Before the VAE is first trained every path is uniform. For a gradient
strategy (Sec. 4.3, Eq. 12) ``propose`` gives the p_θ path (probability ε) or None, the
strategy's own path; Eq. 12's Γ = p_θ is the end of the schedule, ε = 1.

The VAE learns from the best architectures found so far (Eq. 1: Γ_t is learned from Γ_{t−1} and
the metric of the architectures seen at t − 1). Every ``interval`` epochs and after the last one,
``end_epoch`` scores, with the supernet's current weights, the current top-k together with
``pool`` new distinct architectures drawn from Γ, keeps the ``topk`` best as the VAE's training
data, and retrains the VAE on them (``ArchVae.fit``, from its current weights).

Constraints: every architecture drawn from p_θ meets the hard constraints. A batch of ``tries``
decodes is drawn and the first feasible one is kept (rejection); when none is feasible the first is
repaired: greedily, one decision at a time, the change that most reduces the total relative
excess Σ_c max(0, cost_c / bound_c − 1) (ties: the option p_θ prefers) until it is feasible; when
that gets stuck the draw is dropped (a uniform path in supernet training, a uniform feasible one
in a pool). Every count is kept (``counts``). Uniform paths in supernet training are not
constrained (SPOS); uniform candidates of a pool are (feasible draws, as SPOS's search).

Purity and resume: draws are functions of the generator passed in (supernet training derives it
from (seed, step)), of ε and of the VAE, which change only in ``end_epoch``; pools and VAE training
use generators of (seed, epoch). ``state()`` holds everything (VAE weights, training data, ε,
counts) and ``LearnedSampler(state=...)`` restores it, so a run resumed from a checkpoint draws
what an uninterrupted one draws, on every rank of a distributed run alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.search.objective import Constraints
from hwnas.search.strategies.base import Costs
from hwnas.search.tnas_vae import ArchVae, VaeConfig
from hwnas.space import SearchSpace
from hwnas.supernet import uniform_paths

#: Generator streams (``np.random.default_rng([seed, stream, i])``).
POOL_STREAM, FIT_STREAM, INITIAL_STREAM = 41, 43, 47


@dataclass(frozen=True)
class Schedule:
    """When Γ leans on p_θ and when the VAE learns.

    Attributes:
        eps_inc: ε added per epoch (Tables 4-5 sweep 0 to 0.5).
        topk: Architectures the VAE trains on (the best scored so far).
        pool: New architectures drawn from Γ and scored at each update.
        interval: Epochs between VAE updates (also one after the last epoch).
        tries: Decodes per draw from p_θ before the first one is repaired.
    """

    eps_inc: float = 0.1
    topk: int = 10
    pool: int = 10
    interval: int = 1
    tries: int = 8

    def __post_init__(self) -> None:
        checks = [(0.0 <= self.eps_inc <= 1.0, f"--tnas-eps-inc must be in [0, 1], got {self.eps_inc}."),
                  (self.topk >= 1, f"--tnas-topk must be >= 1, got {self.topk}."),
                  (self.pool >= 1, f"--tnas-pool must be >= 1, got {self.pool}."),
                  (self.interval >= 1, f"--tnas-interval must be >= 1, got {self.interval}."),
                  (self.tries >= 1, f"--tnas-tries must be >= 1, got {self.tries}.")]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def eps(self, epochs_done: int) -> float:
        """ε of the epoch after ``epochs_done`` epochs: ``min(1, ε_inc · epochs_done)``."""
        return min(1.0, self.eps_inc * epochs_done)

    def updates_after(self, epoch: int, *, total: int) -> bool:
        """Whether the VAE is retrained at the end of epoch ``epoch`` (1-based) of ``total``."""
        return epoch % self.interval == 0 or epoch == total


@dataclass
class Counts:
    """What happened to draws (cumulative), and the paths of the current epoch."""

    decodes: int = 0  # architectures drawn from p_θ (accepted ones; rejected decodes not counted)
    infeasible: int = 0  # draws whose `tries` decodes were all infeasible
    repaired: int = 0  # ... of which repair made feasible
    dropped: int = 0  # ... of which repair got stuck (the draw was replaced)
    paths: int = 0  # supernet-training paths this epoch
    paths_vae: int = 0  # ... of which from p_θ


def violation(lat: np.ndarray, flops: np.ndarray, params: np.ndarray, constraints: Constraints) -> np.ndarray:
    """Σ over the bounds of max(0, cost / bound − 1): 0 exactly when every bound holds, (N,)."""
    out = np.zeros(np.shape(lat), dtype=np.float64)
    for value, bound in ((lat, constraints.latency_ms), (flops, constraints.flops_max),
                         (params, constraints.params_max)):
        if bound is not None:
            out += np.maximum(0.0, np.asarray(value, dtype=np.float64) / bound - 1.0)
    return out


def repair(idx: np.ndarray, logp: np.ndarray, *, num_options: Sequence[int], costs: Costs,
           constraints: Constraints, max_moves: int | None = None) -> np.ndarray | None:
    """Greedy repair of an infeasible architecture (module docstring), or None when it gets stuck.

    Args:
        idx: Option indices, (D,).
        logp: log p_θ(o | z) of the draw, (D, max options): ties go to the likelier option.
        num_options: Options per decision.
        costs: Predicted costs.
        constraints: The bounds.
        max_moves: Most decisions changed (default: D).
    """
    cur = np.asarray(idx, dtype=np.int64).copy()
    moves = [(d, o) for d, n in enumerate(num_options) for o in range(n)]
    dd = np.array([d for d, _ in moves])
    oo = np.array([o for _, o in moves])
    v = float(violation(*costs.all(cur[None]), constraints)[0])
    for _ in range(len(num_options) if max_moves is None else max_moves):
        if v <= 0.0:
            return cur
        cands = np.repeat(cur[None], len(moves), axis=0)
        cands[np.arange(len(moves)), dd] = oo
        vs = violation(*costs.all(cands), constraints)
        best = int(np.lexsort((-logp[dd, oo], vs))[0])  # least violation, then likeliest option
        if not vs[best] < v:
            return None
        cur, v = cands[best], float(vs[best])
    return cur if v <= 0.0 else None


def _key(idx: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in idx)


@dataclass
class LearnedSampler:
    """Γ(α) of TNAS with its VAE, training data, ε and counts (module docstring).

    Construct with ``LearnedSampler.build``; call it as a ``PathSampler`` (TNAS-OS) or use
    ``propose`` (gradient strategies).
    """

    space: SearchSpace
    schedule: Schedule
    vae_config: VaeConfig
    seed: int
    costs: Costs
    constraints: Constraints
    vae: ArchVae
    eps: float = 0.0
    trained: bool = False
    data: list[list[Any]] = field(default_factory=list)  # [[indices], accuracy], best first
    counts: Counts = field(default_factory=Counts)
    updates: int = 0
    evaluations: int = 0  # supernet scores spent on the VAE's training data
    last_fit: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.num_options = tuple(int(n) for n in self.space.num_options)
        self._uniform = uniform_paths(self.space)

    @classmethod
    def build(cls, space: SearchSpace, *, schedule: Schedule, vae_config: VaeConfig, seed: int, costs: Costs,
              constraints: Constraints, state: dict[str, Any] | None = None) -> "LearnedSampler":
        """A fresh sampler (ε = 0, untrained VAE), or the one ``state()`` saved."""
        out = cls(space=space, schedule=schedule, vae_config=vae_config, seed=seed, costs=costs,
                  constraints=constraints, vae=ArchVae(space.num_options, config=vae_config, seed=seed))
        if state is not None:
            out.vae.load_state_dict(state["vae"])
            out.eps, out.trained, out.data = float(state["eps"]), bool(state["trained"]), list(state["data"])
            out.counts = Counts(**state["counts"])
            out.updates, out.evaluations = int(state["updates"]), int(state["evaluations"])
            out.last_fit = dict(state["last_fit"])
        out.vae.eval()
        return out

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs (VAE weights as tensors, the rest plain)."""
        return {"vae": self.vae.state_dict(), "eps": self.eps, "trained": self.trained, "data": self.data,
                "counts": asdict(self.counts), "updates": self.updates, "evaluations": self.evaluations,
                "last_fit": self.last_fit}

    # ---- draws -------------------------------------------------------------------------------

    def feasible(self, idx: np.ndarray) -> np.ndarray:
        """Constraint check of option indices (N, D) → (N,) bool."""
        return violation(*self.costs.all(np.atleast_2d(idx)), self.constraints) <= 0.0

    def draw_vae(self, rng: np.random.Generator) -> np.ndarray | None:
        """One feasible architecture from p_θ (reject among ``tries`` decodes, then repair), or None."""
        idx, logp = self.vae.sample(rng, self.schedule.tries)
        ok = np.flatnonzero(self.feasible(idx))
        if ok.size:
            self.counts.decodes += 1
            return idx[ok[0]]
        self.counts.infeasible += 1
        fixed = repair(idx[0], logp[0], num_options=self.num_options, costs=self.costs, constraints=self.constraints)
        if fixed is None:
            self.counts.dropped += 1
            return None
        self.counts.repaired += 1
        self.counts.decodes += 1
        return fixed

    def propose(self, rng: np.random.Generator) -> np.ndarray | None:
        """With probability ε a feasible path from p_θ (D,), else None (Eq. 11-12); counted per epoch."""
        self.counts.paths += 1
        if not self.trained or rng.random() >= self.eps:
            return None
        idx = self.draw_vae(rng)
        self.counts.paths_vae += int(idx is not None)
        return idx

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        """TNAS-OS's path sampler (Eq. 11): (1, D). The uniform path is drawn first, exactly as
        ``uniform_paths`` draws it, so ε = 0 trains SPOS's paths."""
        uniform = self._uniform(rng)
        learned = self.propose(rng)
        return uniform if learned is None else learned[None]

    def draw_distinct(self, rng: np.random.Generator, n: int, *, eps: float, exclude: set,
                      max_tries: int = 200) -> list[np.ndarray]:
        """Up to ``n`` distinct feasible architectures not in ``exclude``, each from p_θ with probability
        ``eps`` (when trained) and uniform feasible otherwise."""
        out: list[np.ndarray] = []
        seen = set(exclude)
        for _ in range(max_tries * max(1, n)):
            if len(out) >= n:
                break
            idx = self.draw_vae(rng) if self.trained and rng.random() < eps else None
            if idx is None:
                idx = self._uniform(rng)[0]
                if not self.feasible(idx)[0]:
                    continue
            if _key(idx) in seen:
                continue
            seen.add(_key(idx))
            out.append(idx)
        return out

    def initial_population(self, n: int) -> list[np.ndarray]:
        """The search stage's first population (Sec. 4.2, "from p_θ(α|z) sampling initial seeds"):
        up to ``n`` distinct feasible draws from p_θ (evolution fills the rest uniformly)."""
        if not self.trained:
            return []
        rng = np.random.default_rng([self.seed, INITIAL_STREAM])
        return self.draw_distinct(rng, n, eps=1.0, exclude=set(), max_tries=20)

    # ---- learning (Eq. 1) --------------------------------------------------------------------

    def end_epoch(self, epoch: int, *, total: int, score_many: Callable[[Sequence[np.ndarray]], list[float]],
                  forget: Callable[[], None]) -> dict[str, Any]:
        """After epoch ``epoch`` (1-based) of ``total``: maybe retrain the VAE, then set ε for the next
        epoch. Returns the epoch's history fields (ε, the share of paths from p_θ, counts, VAE loss).
        ``score_many`` scores a pool of paths (shared out among the processes of a data-parallel run)."""
        c = self.counts
        out: dict[str, Any] = {"tnas_eps": self.eps, "tnas_share_vae": c.paths_vae / max(1, c.paths),
                               "tnas_paths": c.paths}
        if self.schedule.updates_after(epoch, total=total):
            forget()  # the weights changed since the last scores
            out.update(self.update(epoch, score_many=score_many))
        self.eps = self.schedule.eps(epoch)
        c.paths = c.paths_vae = 0
        return {**out, "tnas_next_eps": self.eps, "tnas_decodes": c.decodes, "tnas_infeasible": c.infeasible,
                "tnas_repaired": c.repaired, "tnas_dropped": c.dropped}

    def update(self, epoch: int, *, score_many: Callable[[Sequence[np.ndarray]], list[float]]) -> dict[str, Any]:
        """Scores the top-k and a new pool from Γ, keeps the top-k, retrains the VAE on it."""
        old = [np.asarray(i, dtype=np.int64) for i, _ in self.data]
        rng = np.random.default_rng([self.seed, POOL_STREAM, epoch])
        new = self.draw_distinct(rng, self.schedule.pool, eps=self.eps, exclude={_key(i) for i in old})
        pool = old + new
        scored = [(idx, float(acc)) for idx, acc in zip(pool, score_many(pool))]
        self.evaluations += len(scored)
        scored.sort(key=lambda t: (-t[1], _key(t[0])))
        self.data = [[[int(v) for v in idx], acc] for idx, acc in scored[: self.schedule.topk]]
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, FIT_STREAM, epoch]).integers(2**62)))
        self.last_fit = self.vae.fit(np.asarray([i for i, _ in self.data], dtype=np.int64), generator=gen)
        self.trained, self.updates = True, self.updates + 1
        accs = [a for _, a in self.data]
        return {"tnas_scored": len(scored), "tnas_new": len(new), "tnas_data_best": accs[0],
                "tnas_data_mean": float(np.mean(accs)), "tnas_vae_kl": self.last_fit["kl"],
                "tnas_vae_recon": self.last_fit["recon"], "tnas_vae_loss": self.last_fit["loss"]}

    def summary(self) -> dict[str, Any]:
        """The summary's view: ε, updates, scores spent, counts, the VAE's data and last loss, sizes."""
        return {"eps": self.eps, "updates": self.updates, "training_evaluations": self.evaluations,
                "counts": {k: v for k, v in asdict(self.counts).items() if not k.startswith("paths")},
                "vae_data": self.data, "vae_loss": self.last_fit, "vae_parameters": self.vae.num_parameters(),
                "vae": self.vae_config.to_json(), "schedule": asdict(self.schedule)}

