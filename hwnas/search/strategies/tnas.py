"""``tnas``: TNAS (Yan et al., CONVERTER 2021), a learned architecture sampler for one-shot and gradient search.

TNAS replaces the fixed path sampler of weight-sharing NAS by a distribution Γ(α) learned during
the search (Sec. 3.1, Eq. 1) with a VAE whose encoder and decoder are transformers over the
sequence of decisions (Sec. 3.2-3.3, Eq. 2-8; ``hwnas.search.tnas_vae``). The sampler, its
schedule, its training data and its feasibility repair are ``hwnas.search.tnas_sampler``.

**TNAS-OS** (``--tnas-gradient none``, Sec. 4.2):

1. Supernet training (``ctx.train_weights``, the SPOS loop) draws each step's path from
   Γ(α) = (1 − ε)·U(α) + ε·p_θ(α | z) (Eq. 11), ε = min(1, ``--tnas-eps-inc`` · epochs done).
2. Every ``--tnas-interval`` epochs and after the last one, the current top-k and ``--tnas-pool``
   new architectures from Γ are scored with the supernet (BN recalibrated, the architecture split),
   the best ``--tnas-topk`` become the VAE's training data, and the VAE is retrained on them (Eq. 1).
3. Search: the initial population is drawn from p_θ (every draw feasible, repaired or rejected and
   counted), then SPOS's evolution runs (``evolve``, Guo et al. 2020, Alg. 1) with the evolution
   flags (``--population``, ``--generations``, ``--top-k``, ``--mutation-prob``).

The candidates of the result are those the evolution scored and the VAE's last training set (the
best architectures the sampler found, scored with the final weights at the update after the last
epoch; the paper's search keeps only the evolution's, which would discard them); the winner is the
most accurate of these. Scores spent on the VAE's data during training are reported beside them
(``extra.tnas.training_evaluations``), so a comparison at equal evaluated candidates counts both.

**TNAS with a gradient strategy** (``--tnas-gradient gdas``, Sec. 4.3, Eq. 12). The paper:
"We extract an architecture α_i from p_θ(α|z), and update the super network weight W_αi and
multinomial distribution parameter x_i accordingly", Γ(α) = p_θ(α|z); it gives no more detail.
Chosen here: GDAS (Dong & Yang 2019; ``--strategy gdas`` with its flags ``--msgdas-*``) is the
gradient strategy, its α the multinomial parameters. Each weight step trains the path p_θ proposes
with probability ε (on the same schedule as TNAS-OS; ε = 1 is Eq. 12) and GDAS's own Gumbel sample
otherwise, so the untrained VAE of the first epochs proposes nothing; every architecture step is
GDAS's (Gumbel-softmax on the architecture split, straight-through gradient to α), and the result
is GDAS's derived architecture. The VAE learns as in TNAS-OS, at the ends of the epochs of the
alternating loop. The composition goes through the gradient strategy's ``weight_paths`` hook
(``hwnas.search.dnas.WeightPaths``); no training code is copied.

History: each training epoch's line carries ``tnas_eps`` (ε of that epoch), ``tnas_share_vae``
(the share of its paths drawn from p_θ), ``tnas_vae_kl`` / ``tnas_vae_recon`` (the two terms of
Eq. 2 after a retraining) and the draw counts (``tnas_infeasible``, ``tnas_repaired``,
``tnas_dropped``). The VAE, its data, ε and the counts are in every checkpoint: a killed run
resumes to the same result.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hwnas.errors import InputError
from hwnas.search.dnas import WeightPaths
from hwnas.search.strategies.base import SearchContext, SearchResult, Strategy, register_strategy
from hwnas.search.strategies.evolution import EvolutionConfig, evolve
from hwnas.search.strategies.msgdas import Gdas
from hwnas.search.tnas_sampler import LearnedSampler, Schedule
from hwnas.search.tnas_vae import VaeConfig
from hwnas.supernet import step_rng

PHASE = "tnas"
GRADIENT = ("none", "gdas")
#: Generator stream of the proposals to a gradient strategy's weight steps.
PROPOSAL_STREAM = 53


@dataclass(frozen=True)
class TnasConfig:
    """TNAS settings: the sampler's schedule, the VAE, the search stage, the gradient strategy.

    Attributes:
        schedule: ε_inc, top-k, pool, update interval, decodes per draw.
        vae: VAE sizes and training.
        evolution: The search stage of TNAS-OS (SPOS's evolution).
        gradient: ``none`` (TNAS-OS) or ``gdas`` (TNAS-G).
    """

    schedule: Schedule
    vae: VaeConfig
    evolution: EvolutionConfig
    gradient: str = "none"

    def __post_init__(self) -> None:
        if self.gradient not in GRADIENT:
            raise InputError(f"--tnas-gradient must be one of {', '.join(GRADIENT)}, got {self.gradient!r}.")

    def to_json(self) -> dict[str, Any]:
        return {"schedule": asdict(self.schedule), "vae": self.vae.to_json(), "evolution": self.evolution.to_json(),
                "gradient": self.gradient}


def _refuse_flags(args: argparse.Namespace) -> None:
    """Flags of other one-shot strategies that TNAS would silently ignore (InputError)."""
    if getattr(args, "pareto", ()):
        raise InputError("--pareto is supported by spos-evolution and random, not tnas: its sampler learns the "
                         "architectures of one budget.")
    if getattr(args, "sampling", "uniform") != "uniform" or getattr(args, "constraint_aware", None) is not None:
        raise InputError("--sampling and --constraint-aware do not apply to --strategy tnas: its supernet paths "
                         "come from the learned sampler (Eq. 11).")
    if getattr(args, "shared_epochs", 0.0):
        raise InputError("--shared-epochs does not apply to --strategy tnas: its sampler scores paths on the "
                         "supernet while it trains, which the shared phase's twin network would bypass.")


@register_strategy("tnas")
class Tnas(Strategy):
    """TNAS-OS, or TNAS with GDAS; see the module docstring."""

    def __init__(self, *, config: TnasConfig, gdas: Gdas | None = None) -> None:
        if (config.gradient == "gdas") != (gdas is not None):
            raise ValueError("give the GDAS strategy exactly when --tnas-gradient is gdas")
        self.config, self.gdas = config, gdas

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        s = Schedule()
        p.add_argument("--tnas-eps-inc", type=float, default=s.eps_inc,
                       help="TNAS: epsilon added per epoch to the share of paths drawn from the VAE (Eq. 11)")
        p.add_argument("--tnas-topk", type=int, default=s.topk, help="TNAS: best architectures the VAE trains on")
        p.add_argument("--tnas-pool", type=int, default=s.pool,
                       help="TNAS: new architectures drawn from Gamma and scored at each VAE update")
        p.add_argument("--tnas-interval", type=int, default=s.interval,
                       help="TNAS: epochs between VAE updates (also one after the last epoch)")
        p.add_argument("--tnas-tries", type=int, default=s.tries,
                       help="TNAS: decodes per draw before an infeasible one is repaired")
        p.add_argument("--tnas-gradient", choices=GRADIENT, default="none",
                       help="TNAS: none (TNAS-OS: supernet + evolution from the VAE) or gdas (the VAE proposes "
                            "GDAS's weight-step paths; --msgdas-* flags configure GDAS)")
        VaeConfig.add_arguments(p)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Tnas":
        _refuse_flags(args)
        config = TnasConfig(
            schedule=Schedule(eps_inc=args.tnas_eps_inc, topk=args.tnas_topk, pool=args.tnas_pool,
                              interval=args.tnas_interval, tries=args.tnas_tries),
            vae=VaeConfig.from_args(args), evolution=EvolutionConfig.from_args(args), gradient=args.tnas_gradient)
        return cls(config=config, gdas=Gdas.from_args(args) if config.gradient == "gdas" else None)

    def settings(self) -> dict[str, Any]:
        return {**self.config.to_json(), **({"gdas": self.gdas.settings()} if self.gdas is not None else {})}

    def search(self, ctx: SearchContext) -> SearchResult:
        saved = (ctx.state or {}).get("strategy") or {}
        learned = LearnedSampler.build(ctx.space, schedule=self.config.schedule, vae_config=self.config.vae,
                                       seed=ctx.seed, costs=ctx.costs, constraints=ctx.constraints,
                                       state=saved.get("proposal" if self.gdas is not None else "tnas"))
        total = ctx.train_config.epochs

        def on_epoch(epoch: int) -> dict[str, Any]:
            return learned.end_epoch(epoch, total=total, score_many=ctx.score_many, forget=ctx.forget_scores)

        if self.gdas is not None:
            return self._with_gdas(ctx, learned, on_epoch)
        ctx.train_weights(learned, on_epoch=on_epoch, extra_state=lambda: {"strategy": {"tnas": learned.state()}})
        current = saved.get("current")
        initial = learned.initial_population(self.config.evolution.population) if current is None else []
        generated = saved.get("generated") if current is not None else [[int(v) for v in i] for i in initial]

        def on_generation(state: dict[str, Any]) -> None:
            ctx.run.append_history({"phase": PHASE, **state["history"]})
            ctx.checkpoint({"tnas": learned.state(), "current": state, "generated": generated})
            ctx.run.crash_point("generation")

        state = evolve(ctx.space, score_many=ctx.score_many, feasible=ctx.feasible, costs=ctx.costs,
                       config=self.config.evolution, seed=ctx.seed, state=current, on_generation=on_generation,
                       initial=initial)
        searched = len(state["evaluated"])
        known = ctx.evaluate([np.asarray(i, dtype=np.int64) for i, _ in learned.data])  # cached: final weights
        seen = {tuple(c["indices"]) for c in known}
        candidates = known + [c for c in state["evaluated"] if tuple(c["indices"]) not in seen]
        best = min(candidates, key=lambda c: (-c["accuracy"], c["indices"]))
        extra = {"mode": "one-shot", **learned.summary(), "vae_generated": generated,
                 "search_evaluations": searched, "evaluations": learned.evaluations + searched}
        return SearchResult(best=np.asarray(best["indices"], dtype=np.int64), score=float(best["accuracy"]),
                            candidates=candidates, extra={"tnas": extra})

    def _with_gdas(self, ctx: SearchContext, learned: LearnedSampler, on_epoch) -> SearchResult:
        """TNAS-G: GDAS whose weight steps train the paths the learned sampler proposes (Eq. 12)."""

        def propose(step: int) -> np.ndarray | None:
            return learned.propose(step_rng(ctx.seed, step, stream=PROPOSAL_STREAM))

        hook = WeightPaths(propose=propose, on_epoch=on_epoch, state=learned.state)
        result = Gdas(config=self.gdas.config, weight_paths=hook).search(ctx)
        searched = len(result.candidates)
        result.extra["tnas"] = {"mode": "gdas", **learned.summary(), "search_evaluations": searched,
                                "evaluations": learned.evaluations + searched}
        return result
