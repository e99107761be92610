"""``proxyless``: ProxylessNAS (Cai et al., ICLR 2019) on the shared supernet.

Architecture parameters α (one logit vector per decision, ``hwnas.search.dnas.ArchParams``) and the
supernet's weights are optimized alternately (``hwnas.search.dnas.alternate``; Sec. 3.2.1, "we train the
weight parameters and the binarized architecture parameters in an alternative manner"):

* Weight step (train split): binary gates sample ONE path from softmax(α) per decision; only that
  path runs, so memory is that of one path (Sec. 3.2, Eq. 3).
* Architecture step (arch split), ``--proxyless-mode gradient``: two options per decision drawn from
  softmax(α) without replacement, their probabilities renormalized, the active one drawn among
  them; both sampled paths are computed (``hwnas.supernet.binary_gates.gated_forward``; the inactive one
  without storing its internals, as the reference's ``oi.detach()``), and α gets the
  BinaryConnect gradient of the binary gates (Eq. 4) on the two involved entries; after the Adam
  step the two entries are rescaled so that unsampled options keep their probabilities
  (Sec. 3.2.1). The loss adds the hardware cost through the exact differentiable expected latency
  of the table (Sec. 3.3, Eq. 6), taken under the step's two-path distribution (p̃ on the pair, 0
  elsewhere, as the reference code's ``current_prob_over_ops``), so only the two sampled entries
  of α move. Latency forms (``--proxyless-loss``):

  - ``target`` (the default; LightNAS, Luo et al. DAC 2022): ``CE + λ·(E[LAT]/T_eff − 1)`` with λ
    by dual ascent after every architecture step, ``λ ← λ + η·(LAT(argmax α)/T_eff − 1)``
    (``--proxyless-lambda-lr`` η, ``--proxyless-lambda0``), T_eff = margin·T
    (``--proxyless-target-margin``, 0.975). λ may go negative, so the search climbs up to the budget
    as well as down to it: the derived architecture lands just under T (``hwnas.search.dual_ascent``).
  - ``tfnas`` (TF-NAS, Hu et al. ECCV 2020): ``CE + λ·|E[LAT]/T_eff − 1|``, fixed λ (``--proxyless-lambda``).
  - ``mul`` (the paper's): ``α·CE·(log E[LAT] / log T)^β``; its end point hardly depends on T
    (``hwnas.search.objective.proxyless_mul_factor``).
  - ``add`` (the paper's): ``CE + λ·E[LAT]/T``; it only ever pushes the latency down.

  Optionally with FLOPs / params factors (mul) or terms (the others) of the same form. The
  history reports the full E[LAT] under softmax(α), the derived latency and λ per epoch.
* ``--proxyless-mode reinforce`` (Sec. 3.3, "REINFORCE-based approach"; Proxyless-R of Table 2):
  K paths sampled from softmax(α) are scored on the arch batch; reward (``--proxyless-rl-reward``)
  ``absolute`` (the default; TuNAS, Bender et al. CVPR 2020): ``ACC + β·|LAT/T_eff − 1|``, β = −0.1
  (``--proxyless-rl-beta``), or ``mnasnet``: ``ACC · (LAT / T)^(−w)`` (MnasNet-style soft reward;
  the reference's ``acc · (T / LAT)^0.1``); ∇α = mean_k (R_k − b) ∇α log p(path_k), b a moving
  average of the mean reward.

Decisions vs layers: in ``proxyless`` / ``mobilenetv2`` every layer is one decision. In ``ofa-mbv3``
a layer depends on a kernel, an expand and its stage's depth decision; each decision gets its own
binary gate and a layer's weight is the product of its decisions' gates (as
``SuperNet.weighted_forward``), so in the two-path step a layer computes its active block plus one
block per decision with the other sampled option (at most 1 + 3 blocks, not 2³).

Derivation: argmax α per decision (Sec. 3.2, "derive the compact architecture by pruning redundant
paths"); with the ``target`` loss, when the final argmax is over T or farther under it than
another argmax architecture the search visited, that nearest one under T instead
(``hwnas.search.dual_ascent.BudgetTerm.end_point``; ``extra.end_point`` says which). Its predicted
latency is reported against the budget, and softmax(α) per decision after every epoch goes to the
history and to ``alpha_heatmap.png``.

Schedule: after the warm-up epochs (weights only), one architecture step follows every weight step
(the reference code updates α every 5 weight steps on ImageNet, where an epoch has 5000 steps);
Adam on α with β = (0, 0.999) as the reference, so an entry without gradient does not move; α
starts at zero (uniform). The run checkpoints and resumes through ``alternate`` (the REINFORCE
baseline and the dual-ascent λ are part of the checkpoint).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.search.dnas import (AlternatingConfig, ArchParams, alternate, arch_step_count, auto_arch_lr,
                               refuse_path_training_flags)
from hwnas.search.dual_ascent import BudgetTerm
from hwnas.search.proxyless_steps import PAPER_ARCH_LR, ArchObjective, ProxylessConfig, ProxylessSteps
from hwnas.search.strategies.base import SearchContext, SearchResult, Strategy, register_strategy
from hwnas.space import is_ref, load_space
from hwnas.supernet import check_mixable, sample_path

PHASE = "proxyless"


@register_strategy("proxyless")
class Proxyless(Strategy):
    """ProxylessNAS: binary-gate path-level search with a differentiable latency loss (or REINFORCE)."""

    def __init__(self, *, config: ProxylessConfig) -> None:
        self.config = config

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        ProxylessConfig.add_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Proxyless":
        """The strategy from parsed flags; refuses inconsistent flags before any run folder is written."""
        config = ProxylessConfig.from_args(args)
        refuse_path_training_flags(args, strategy="proxyless", warmup_flag="--proxyless-warmup-epochs")
        if config.flops_weight > 0 and args.flops_max is None:
            raise InputError("--proxyless-flops-weight needs --flops-max (the FLOPs target of the penalty).")
        if config.params_weight > 0 and args.params_max is None:
            raise InputError("--proxyless-params-weight needs --params-max (the params target of the penalty).")
        if config.warmup_epochs is not None and args.epochs > 0 and config.warmup_epochs >= args.epochs:
            raise InputError(f"--proxyless-warmup-epochs {config.warmup_epochs} leaves no epoch of --epochs "
                             f"{args.epochs} for architecture steps.")
        if config.mode == "gradient":
            space = load_space(args.space)
            if any(is_ref(s.width) for s in space.spec.stages):
                raise InputError(f"--space {space.name} has width decisions, whose candidates differ in shape and "
                                 f"cannot be gated two at a time; use --proxyless-mode reinforce or another space.")
        return cls(config=config)

    def settings(self) -> dict[str, Any]:
        return self.config.to_json()

    def _aimed(self, budget: float) -> float:
        """The latency the search aims at, ms: T_eff = margin·T for the budget-targeting forms, else T."""
        c = self.config
        targeting = c.loss in ("target", "tfnas") if c.mode == "gradient" else c.rl_reward == "absolute"
        return c.dual.margin * budget if targeting else budget

    # ---- the search ------------------------------------------------------------------------

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg = self.config
        space, supernet = ctx.space, ctx.supernet
        ds, predictor, train = ctx.dataset, ctx.predictor, ctx.train_config
        if cfg.mode == "gradient":
            check_mixable(supernet)
        saved = (ctx.state or {}).get("strategy") or {}
        objective = ArchObjective(config=cfg, predictor=predictor, constraints=ctx.constraints,
                                  term_state=saved.get("budget_term"))
        for split, name in ((ds.train, "weight-training"), (ds.arch, "architecture")):
            if len(split) < train.batch_size:
                raise InputError(f"--batch-size {train.batch_size} is larger than the {name} split "
                                 f"({len(split)} examples); lower it or raise --data-limit.")
        warmup = cfg.warmup_epochs if cfg.warmup_epochs is not None else train.epochs // 4
        if train.epochs > 0 and warmup >= train.epochs:
            raise InputError(f"--proxyless-warmup-epochs {warmup} leaves no epoch of --epochs {train.epochs} "
                             f"for architecture steps.")
        a_lr = cfg.arch_lr if cfg.arch_lr is not None else auto_arch_lr(
            PAPER_ARCH_LR, arch_steps=arch_step_count(ds, epochs=train.epochs, warmup_epochs=warmup,
                                                      batch_size=train.batch_size))
        acfg = AlternatingConfig(epochs=train.epochs, batch_size=train.batch_size, w_lr=train.lr,
                                 w_momentum=train.momentum, w_weight_decay=train.weight_decay, a_lr=a_lr,
                                 a_betas=(0.0, 0.999), warmup_epochs=warmup, checkpoint_every=train.checkpoint_every)
        arch = ArchParams(space.num_options)
        stepper = ProxylessSteps(cfg=cfg, supernet=supernet, arch=arch, objective=objective, state=saved,
                                 dist=ctx.run.dist)
        target = objective.target

        def on_epoch(epoch: int) -> dict[str, Any]:
            with torch.no_grad():
                e_lat = float(predictor.expected_latency(arch.probs()))
            lat = float(predictor.latency(arch.derive()[None])[0])
            rec = {"budget_ms": target, "expected_latency_ms": e_lat, "derived_latency_ms": lat,
                   "derived_budget_ratio": lat / target}
            if cfg.mode == "reinforce":
                rec["baseline"] = stepper.baseline
            if stepper.term is not None:
                rec["lambda"] = stepper.term.lam  # after this epoch's last update
            return rec

        alternate(supernet=supernet, arch=arch, ds=ds, config=acfg, seed=ctx.seed, run=ctx.run, phase=PHASE,
                  weight_step=stepper.weight_step,
                  arch_step=stepper.arch_gradient if cfg.mode == "gradient" else stepper.arch_reinforce,
                  state=ctx.state, extra_state=lambda: {"strategy": stepper.state()},
                  on_epoch=on_epoch, after_arch_step=stepper.after_arch_step if cfg.mode == "gradient" else None)
        return self._finish(ctx, arch, predictor, term=stepper.term, arch_lr=a_lr)

    def _finish(self, ctx: SearchContext, arch: ArchParams, predictor: Any, *, term: BudgetTerm | None,
                arch_lr: float) -> SearchResult:
        space = ctx.space
        history = [h for h in ctx.run.history() if h.get("phase") == PHASE and "probs" in h]
        heatmap = ctx.heatmap(history, title=f"ProxylessNAS ({self.config.mode}) on {space.name}: softmax(α)")
        argmax = arch.derive()
        derived = argmax if term is None else term.end_point(argmax, float(ctx.costs.latency(argmax[None])[0]))
        picks = [derived, argmax] + [np.asarray(h["derived"], dtype=np.int64) for h in history]
        rng = np.random.default_rng([ctx.seed, 7919])
        picks += [sample_path(arch.alphas, rng) for _ in range(self.config.samples)]
        candidates = [{**c, "derived": c["indices"] == [int(v) for v in derived]} for c in ctx.evaluate(picks)]
        with torch.no_grad():
            probs = arch.probs()
            e_lat = float(predictor.expected_latency(probs))
        lat = candidates[0]["latency_ms"]
        target = float(ctx.constraints.latency_ms)
        gradient = self.config.mode == "gradient"
        extra = {"mode": self.config.mode, "loss": self.config.loss if gradient else "reward",
                 "rl_reward": None if gradient else self.config.rl_reward,
                 "lambda": None if term is None else term.lam, "arch_lr": arch_lr,
                 "end_point": "argmax" if np.array_equal(derived, argmax) else "visited argmax nearest under T",
                 "aimed_latency_ms": self._aimed(float(ctx.constraints.latency_ms)),
                 "expected_latency_ms": e_lat, "derived_latency_ms": lat, "budget_ms": target,
                 "derived_budget_ratio": lat / target, "within_15pct_of_budget": abs(lat / target - 1) <= 0.15,
                 "final_probs": arch.snapshot(), "heatmap": heatmap, "epochs_logged": len(history)}
        return SearchResult(best=derived, score=candidates[0]["accuracy"], candidates=candidates, extra=extra)
