"""ProxylessNAS's settings, hardware-aware loss / reward and its weight and architecture steps.

The strategy (``hwnas.search.strategies.proxyless``) runs these callbacks in ``hwnas.search.dnas.alternate``;
see its docstring for the method (Cai et al., ICLR 2019, Sec. 3.2-3.3, Eq. 3, 4 and 6).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.search.dnas import ARCH_TRAVEL, ArchParams
from hwnas.search.dual_ascent import TARGET_FORMS, BudgetTerm, DualAscentConfig
from hwnas.search.objective import (TUNAS_BETA, Constraints, mnasnet_reward, proxyless_add_loss,
                                    proxyless_mul_factor, proxyless_mul_loss, tunas_reward)
from hwnas.supernet import (SuperNet, TwoPaths, binary_connect_grad, gated_forward, log_prob, one_hot_gates,
                            pair_probs, rescale_pair, sample_path, sample_two_paths)
from hwnas.train import SINGLE_PROCESS, Distributed, classification_loss

MODES = ("gradient", "reinforce")
LOSSES = ("target", "tfnas", "mul", "add")
RL_REWARDS = ("absolute", "mnasnet")
#: ProxylessNAS's Adam learning rate of α (the reference code), the floor of the automatic one.
PAPER_ARCH_LR = 1e-3


@dataclass(frozen=True)
class ProxylessConfig:
    """ProxylessNAS settings (defaults: the reference code's ``imagenet_arch_search.py``).

    Attributes:
        mode: ``gradient`` (binary gates, BinaryConnect, two-path) or ``reinforce``.
        loss: ``target`` (LightNAS: CE + λ·(E[LAT]/T_eff − 1), λ by dual ascent; the default),
            ``tfnas`` (CE + λ·|E[LAT]/T_eff − 1|, λ = ``lam``), ``mul`` (the paper's
            α·CE·(log E[LAT]/log T)^β) or ``add`` (the paper's CE + λ·E[LAT]/T).
        alpha: α of the multiplicative loss (0.2).
        beta: β of the multiplicative loss (0.3).
        lam: λ of the additive and the tfnas losses (0.1).
        dual: λ0, η and margin (T_eff = margin·T) of the ``target`` form; the margin also sets
            T_eff of ``tfnas`` and of the absolute reward (``hwnas.search.dual_ascent``).
        flops_weight: Exponent (mul) or weight (add, reinforce) of the FLOPs penalty against
            ``--flops-max``; 0 = off.
        params_weight: The same against ``--params-max``.
        arch_lr: Adam learning rate of α; None (default): ``hwnas.search.dnas.auto_arch_lr`` of the
            reference's 1e-3 for the run's number of architecture steps (Adam betas (0, 0.999) as
            the reference).
        warmup_epochs: Weight-only epochs before α moves (None: a quarter of ``--epochs``, as the
            reference's 40 warm-up epochs of 160).
        rl_samples: REINFORCE: paths sampled per architecture step (10).
        rl_reward: REINFORCE: ``absolute`` (TuNAS, ACC + β·|LAT/T_eff − 1|; the default) or
            ``mnasnet`` (ACC · (LAT / T)^(−w), the reference's form).
        rl_beta: REINFORCE: β of the absolute reward (−0.10, TuNAS's code).
        rl_tradeoff: REINFORCE: w in ACC · (LAT / T)^(−w) (0.1, the reference's ``acc·(T/LAT)^0.1``).
        rl_over_tradeoff: REINFORCE: the exponent above T (None: ``rl_tradeoff``). With equal
            exponents T only rescales the reward and so does not steer the search (MnasNet Sec. 3);
            e.g. 1 penalizes over-budget paths as MnasNet's hard reward.
        rl_baseline_weight: REINFORCE: the reward baseline moves ``b ← b + weight·(mean(R) − b)``
            *before* the advantage R − b is taken, as in the reference code (``rl_update_step``,
            ``rl_baseline_decay_weight`` 0.99); the first step's b is mean(R).
        samples: Paths drawn from the final softmax(α) and scored, besides the derived ones (for
            the Pareto plot).
    """

    mode: str = "gradient"
    loss: str = "target"
    alpha: float = 0.2
    beta: float = 0.3
    lam: float = 0.1
    dual: DualAscentConfig = field(default_factory=DualAscentConfig)
    flops_weight: float = 0.0
    params_weight: float = 0.0
    arch_lr: float | None = None
    warmup_epochs: int | None = None
    rl_samples: int = 10
    rl_reward: str = "absolute"
    rl_beta: float = TUNAS_BETA
    rl_tradeoff: float = 0.1
    rl_over_tradeoff: float | None = None
    rl_baseline_weight: float = 0.99
    samples: int = 10

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"--proxyless-mode must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if self.loss not in LOSSES:
            raise InputError(f"--proxyless-loss must be one of {', '.join(LOSSES)}, got {self.loss!r}.")
        if self.rl_reward not in RL_REWARDS:
            raise InputError(f"--proxyless-rl-reward must be one of {', '.join(RL_REWARDS)}, got {self.rl_reward!r}.")
        checks = [("--proxyless-alpha", self.alpha > 0), ("--proxyless-beta", self.beta >= 0),
                  ("--proxyless-lambda", self.lam >= 0), ("--proxyless-flops-weight", self.flops_weight >= 0),
                  ("--proxyless-params-weight", self.params_weight >= 0), ("--proxyless-arch-lr", self.arch_lr is None or self.arch_lr > 0),
                  ("--proxyless-rl-samples", self.rl_samples >= 1), ("--proxyless-rl-beta", self.rl_beta <= 0),
                  ("--proxyless-rl-tradeoff", self.rl_tradeoff >= 0),
                  ("--proxyless-rl-over-tradeoff", self.rl_over_tradeoff is None or self.rl_over_tradeoff >= 0),
                  ("--proxyless-rl-baseline-weight", 0 < self.rl_baseline_weight <= 1),
                  ("--proxyless-samples", self.samples >= 0),
                  ("--proxyless-warmup-epochs", self.warmup_epochs is None or self.warmup_epochs >= 0)]
        for flag, ok in checks:
            if not ok:
                raise InputError(f"{flag} is out of range (see hwnas search --help).")

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("proxyless (ProxylessNAS)")
        g.add_argument("--proxyless-mode", choices=MODES, default=cls.mode,
                       help="gradient: binary gates + BinaryConnect (two-path); reinforce: policy gradient")
        g.add_argument("--proxyless-loss", choices=LOSSES, default=cls.loss,
                       help="target (default; LightNAS): CE + lambda*(E[LAT]/T_eff - 1), lambda by dual ascent on "
                            "the argmax arch's latency; tfnas (TF-NAS): CE + lambda*|E[LAT]/T_eff - 1|; the paper's "
                            "mul: alpha*CE*(log E[LAT]/log T)^beta; add: CE + lambda*E[LAT]/T")
        g.add_argument("--proxyless-alpha", type=float, metavar="A", default=cls.alpha,
                       help="alpha of the mul loss (0.2)")
        g.add_argument("--proxyless-beta", type=float, metavar="B", default=cls.beta,
                       help="beta of the mul loss (0.3)")
        g.add_argument("--proxyless-lambda", type=float, metavar="L", default=cls.lam,
                       help="fixed lambda of the add and tfnas losses (0.1)")
        DualAscentConfig.add_arguments(g, prefix="--proxyless")
        g.add_argument("--proxyless-flops-weight", type=float, metavar="W", default=cls.flops_weight,
                       help="FLOPs penalty against --flops-max: exponent (mul) or weight (add, reinforce); 0 = off")
        g.add_argument("--proxyless-params-weight", type=float, metavar="W", default=cls.params_weight,
                       help="params penalty against --params-max, same form; 0 = off")
        g.add_argument("--proxyless-arch-lr", type=float, metavar="LR", default=cls.arch_lr,
                       help=f"Adam lr of alpha (default: max({PAPER_ARCH_LR:g}, {ARCH_TRAVEL:g}/architecture steps), "
                            f"so alpha can move in a short run)")
        g.add_argument("--proxyless-warmup-epochs", type=int, metavar="E", default=None,
                       help="weight-only epochs before alpha moves (default: a quarter of --epochs)")
        g.add_argument("--proxyless-rl-samples", type=int, metavar="K", default=cls.rl_samples,
                       help="reinforce: paths per architecture step (10)")
        g.add_argument("--proxyless-rl-reward", choices=RL_REWARDS, default=cls.rl_reward,
                       help="reinforce: absolute (default; TuNAS): ACC + beta*|LAT/T_eff - 1|; "
                            "mnasnet (the paper's): ACC*(LAT/T)^-w")
        g.add_argument("--proxyless-rl-beta", type=float, metavar="B", default=cls.rl_beta,
                       help=f"reinforce: beta of the absolute reward ({cls.rl_beta:g}, TuNAS)")
        g.add_argument("--proxyless-rl-tradeoff", type=float, metavar="W", default=cls.rl_tradeoff,
                       help="reinforce, mnasnet reward: w in ACC*(LAT/T)^-w (0.1)")
        g.add_argument("--proxyless-rl-over-tradeoff", type=float, metavar="W", default=None,
                       help="reinforce: exponent above T (default: --proxyless-rl-tradeoff; 1 = MnasNet-style hard)")
        g.add_argument("--proxyless-rl-baseline-weight", type=float, metavar="W", default=cls.rl_baseline_weight,
                       help="reinforce: b += W*(mean reward - b) before the advantage R - b, as the reference "
                            "code (0.99)")
        g.add_argument("--proxyless-samples", type=int, metavar="N", default=cls.samples,
                       help="paths sampled from the final distribution and scored for the Pareto plot (10)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ProxylessConfig":
        return cls(mode=args.proxyless_mode, loss=args.proxyless_loss, alpha=args.proxyless_alpha,
                   beta=args.proxyless_beta, lam=args.proxyless_lambda,
                   dual=DualAscentConfig.from_args(args, prefix="--proxyless"),
                   flops_weight=args.proxyless_flops_weight,
                   params_weight=args.proxyless_params_weight, arch_lr=args.proxyless_arch_lr,
                   warmup_epochs=args.proxyless_warmup_epochs, rl_samples=args.proxyless_rl_samples,
                   rl_reward=args.proxyless_rl_reward, rl_beta=args.proxyless_rl_beta,
                   rl_tradeoff=args.proxyless_rl_tradeoff,
                   rl_over_tradeoff=args.proxyless_rl_over_tradeoff, rl_baseline_weight=args.proxyless_rl_baseline_weight,
                   samples=args.proxyless_samples)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def reference_baseline(baseline: float | None, mean: float, *, weight: float) -> float:
    """The REINFORCE baseline of ProxylessNAS's reference code: ``mean`` at the first step, then
    ``b + weight·(mean − b)``, updated before the advantage R − b is taken.

    Example: ``reference_baseline(0.5, 0.7, weight=0.99)`` = 0.5 + 0.99·0.2 = 0.698.
    """
    return float(mean) if baseline is None else float(baseline) + weight * (float(mean) - float(baseline))


class ArchObjective:
    """The hardware-aware architecture loss (gradient mode) and reward (reinforce mode).

    Args:
        config: Settings (loss form and weights).
        predictor: A ``hwnas.latency.batch.BatchPredictor`` (exact expected costs, discrete costs).
        constraints: T (latency budget, ms) and the optional FLOPs / params targets.
        term_state: The checkpointed state of the ``target`` / ``tfnas`` term (λ), or ``None``.

    Attributes:
        term: The budget-targeting term (``hwnas.search.dual_ascent.BudgetTerm``) of the ``target``
            and ``tfnas`` losses, else ``None``.

    Raises:
        InputError: when a FLOPs / params penalty is on without its target.
    """

    def __init__(self, *, config: ProxylessConfig, predictor: Any, constraints: Constraints,
                 term_state: dict[str, Any] | None = None) -> None:
        if config.flops_weight > 0 and constraints.flops_max is None:
            raise InputError("--proxyless-flops-weight needs --flops-max (the FLOPs target of the penalty).")
        if config.params_weight > 0 and constraints.params_max is None:
            raise InputError("--proxyless-params-weight needs --params-max (the params target of the penalty).")
        self.config, self.predictor = config, predictor
        self.target = float(constraints.latency_ms)
        self.flops_max, self.params_max = constraints.flops_max, constraints.params_max
        self.term = (BudgetTerm(form=config.loss, budget=self.target, config=config.dual, fixed_lambda=config.lam,
                                state=term_state) if config.loss in TARGET_FORMS else None)

    def loss(self, ce: torch.Tensor, probs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of an architecture step and its parts.

        Args:
            ce: Cross-entropy of the arch batch through the binary gates, 0-d.
            probs: The distribution per decision (differentiable): the two-path p̃ in the
                architecture step, or softmax(α).
        """
        c = self.config
        lat = self.predictor.expected_latency(probs)  # ms
        extra = []
        if c.flops_weight > 0:
            extra.append((self.predictor.expected_flops(probs), float(self.flops_max), c.flops_weight))
        if c.params_weight > 0:
            extra.append((self.predictor.expected_params(probs), float(self.params_max), c.params_weight))
        if c.loss == "mul":
            loss = proxyless_mul_loss(ce, lat, self.target, alpha=c.alpha, beta=c.beta)
            for value, target, weight in extra:
                loss = loss * proxyless_mul_factor(value, target, beta=weight)
        else:
            loss = (self.term.loss(ce, lat) if self.term is not None
                    else proxyless_add_loss(ce, lat, self.target, lam=c.lam))
            for value, target, weight in extra:
                loss = loss + weight * value / target
        parts = {"expected_latency_ms": float(lat.detach())}
        if self.term is not None:
            parts["lambda"] = self.term.lam
        return loss, parts

    def reward(self, acc: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """REINFORCE reward of sampled paths (times the FLOPs / params factors ``(F/F_max)^(−w)``).

        ``absolute`` (TuNAS): ``ACC + β · |LAT / T_eff − 1|``, T_eff = margin · T; ``mnasnet``:
        ``ACC · (LAT/T)^(−w)``, w = ``rl_tradeoff`` up to T and ``rl_over_tradeoff`` above.

        Args:
            acc: Accuracy of each path on the arch batch, shape (K,).
            indices: The paths, shape (K, num_decisions).
        """
        c = self.config
        over = c.rl_tradeoff if c.rl_over_tradeoff is None else c.rl_over_tradeoff
        lat = self.predictor.latency(indices)  # predicted ms, (K,)
        if c.rl_reward == "absolute":
            r = np.asarray(tunas_reward(acc, lat, c.dual.margin * self.target, beta=c.rl_beta))
        else:
            r = np.asarray(mnasnet_reward(acc, lat, self.target, alpha=-c.rl_tradeoff, beta=-over))
        if c.flops_weight > 0:
            r = r * np.asarray(mnasnet_reward(1.0, self.predictor.flops(indices), float(self.flops_max),
                                              alpha=-c.flops_weight, beta=-c.flops_weight))
        if c.params_weight > 0:
            r = r * np.asarray(mnasnet_reward(1.0, self.predictor.params(indices), float(self.params_max),
                                              alpha=-c.params_weight, beta=-c.params_weight))
        return np.atleast_1d(r).astype(np.float64)


class ProxylessSteps:
    """The weight- and architecture-step callbacks of ``alternate`` and the state they carry
    (the pair sampled by the last two-path step, the REINFORCE baseline, the dual-ascent λ)."""

    def __init__(self, *, cfg: ProxylessConfig, supernet: SuperNet, arch: ArchParams, objective: ArchObjective,
                 state: dict[str, Any] | None, dist: Distributed = SINGLE_PROCESS) -> None:
        self.cfg, self.supernet, self.arch, self.objective = cfg, supernet, arch, objective
        self.dist = dist  # the REINFORCE accuracies are those of the global arch batch
        self.num_options = [int(a.numel()) for a in arch.alphas]
        self.baseline: float | None = None if not state else state.get("baseline")
        self._pending: tuple[TwoPaths, list[torch.Tensor]] | None = None
        self.term = objective.term if cfg.mode == "gradient" else None

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"baseline": self.baseline}
        if self.term is not None:
            out["budget_term"] = self.term.state()
        return out

    def weight_step(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, step: int) -> dict[str, float]:
        """One path sampled from softmax(α) (binary gates, Eq. 3); CE; backward into the weights."""
        return self.weight_step_on(x, y, sample_path(self.arch.alphas, rng))

    def weight_step_on(self, x: torch.Tensor, y: torch.Tensor, path: np.ndarray) -> dict[str, float]:
        """The weight step of a given path (images N, 3, R, R; labels N)."""
        logits = self.supernet(x, path)
        loss = classification_loss(logits, y)
        loss.backward()
        return {"loss": float(loss.detach()), "acc": float((logits.argmax(1) == y).float().mean())}

    def arch_gradient(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, step: int) -> dict[str, float]:
        """Two-path binary-gate step on two paths sampled from softmax(α) (Sec. 3.2.1)."""
        return self.arch_gradient_on(x, y, sample_two_paths(self.arch.alphas, rng))

    def arch_gradient_on(self, x: torch.Tensor, y: torch.Tensor, paths: TwoPaths) -> dict[str, float]:
        """∂loss/∂g through the gated forward by autograd, then BinaryConnect (Eq. 4) into α.grad.

        The loss's expected latency is taken under the two-path distribution (``pair_probs``), so
        only the sampled entries of α get a gradient; the full E[LAT] under softmax(α) is reported.
        """
        alphas = list(self.arch.alphas)
        gates = one_hot_gates(paths.active, self.num_options)
        logits = gated_forward(self.supernet, x, gates, paths)
        ce = classification_loss(logits, y)
        loss, _ = self.objective.loss(ce, pair_probs(alphas, paths))
        leaves = [g for g in gates if g.requires_grad] + alphas
        loss.backward(inputs=leaves)  # gates and α only: no weight gradients are computed
        for d, a in enumerate(alphas):
            if gates[d].grad is None:
                continue
            bc = binary_connect_grad(gates[d].grad, a, paths.pair(d))
            a.grad = bc if a.grad is None else a.grad + bc
        self._pending = (paths, [a.detach().clone() for a in alphas])
        with torch.no_grad():
            e_lat = float(self.objective.predictor.expected_latency(self.arch.probs()))
        out = {"loss": float(loss.detach()), "ce": float(ce.detach()),
               "acc": float((logits.argmax(1) == y).float().mean()), "expected_latency_ms": e_lat}
        if self.term is not None:
            out["lambda"], out["coefficient"] = self.term.lam, self.term.coefficient  # what this step used
        return out

    def after_arch_step(self, step: int) -> None:
        """Rescales the two updated entries of every decision (Sec. 3.2.1), then the dual-ascent
        update of λ on the new argmax architecture's predicted latency (``target`` loss)."""
        if self._pending is not None:
            paths, old = self._pending
            for d, a in enumerate(self.arch.alphas):
                rescale_pair(a.data, old[d], paths.pair(d))
            self._pending = None
        if self.term is not None:
            derived = self.arch.derive()
            self.term.update(float(self.objective.predictor.latency(derived[None])[0]), derived)

    def arch_reinforce(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator, step: int) -> dict[str, float]:
        """REINFORCE: K sampled paths scored on the arch batch, ∇α = mean (R − b) ∇ log p(path)."""
        alphas = list(self.arch.alphas)
        paths = np.stack([sample_path(alphas, rng) for _ in range(self.cfg.rl_samples)])
        with torch.no_grad():
            acc = np.array([float((self.supernet(x, p).argmax(1) == y).float().mean()) for p in paths])
        acc = np.asarray(self.dist.mean_floats(acc.tolist()))  # equal shares: the global batch's accuracy
        rewards = self.objective.reward(acc, paths)
        mean = float(rewards.mean())
        self.baseline = reference_baseline(self.baseline, mean, weight=self.cfg.rl_baseline_weight)
        loss = -torch.stack([(float(r) - self.baseline) * log_prob(alphas, p) for r, p in zip(rewards, paths)]).mean()
        loss.backward(inputs=alphas)
        return {"reward": mean, "acc": float(acc.mean()), "baseline": self.baseline}

