"""``msgdas``: Mutually-aware Sub-Graphs Differentiable Architecture Search (Tan et al. 2021) with latency.

Per step (Sec. 3.1, Fig. 2): the Gumbel-TopK sampler (``hwnas.supernet.samplers.gumbel_topk``, Eq. 1-3,
Alg. 1) draws K mutually exclusive options per decision from α, i.e. K single-path sub-graphs that
share the stem and the head; each computes its loss on the same batch and the losses are summed.
K = 1 is GDAS (Dong & Yang 2019). Identity candidates (``skip`` options, depth-cut layers) pass
through DropBlock whose ratio rises step-wise from 0 (Sec. 3.2, Eq. 4-6, ``hwnas.supernet.dropblock``). A
forward pass of the whole supernet, candidates mixed by softmax(α), under ``torch.no_grad`` gives soft
labels; each sub-graph adds ``λ · CE(p_super, p_sub)`` with λ rising linearly from 0 (Sec. 3.3,
Eq. 7). Weights and α alternate (``hwnas.search.dnas.alternate``): SGD with a cosine schedule on the weight
split, Adam on the architecture split (Sec. 4.2: α = 0 at start, Adam lr 3e-4, betas (0.5, 0.999),
weight decay 1e-4; weights momentum 0.9, weight decay 3e-4; τ from 10 down to 1 linearly).

Hardware awareness (``--msgdas-latency-loss``): in the architecture step the summed sub-graph loss
gets the table's exact expected latency E[LAT] under softmax(α), once (``arch_loss``). The default
``target`` is LightNAS's budget-targeting term (Luo et al., DAC 2022) ``L + λ · (E[LAT] / T_eff − 1)``,
λ by dual ascent on the argmax architecture's predicted latency after every architecture step, T_eff = margin · T, so
the derived architecture lands just under the budget (``hwnas.search.dual_ascent``; flags
``--msgdas-latency-lambda-lr``, ``-lambda0``, ``-lambda-gain``, ``-target-margin``); ``tfnas`` is
TF-NAS's ``L + λ_l · |E[LAT] / T_eff − 1|`` (Hu et al., ECCV 2020). The forms of ProxylessNAS (Cai et
al. 2019, Sec. 3.3), which the paper suggests (Sec. 4.4), stay selectable: ``mul``
``L · α_l · (log E[LAT] / log T)^β`` and ``add`` ``L + λ_l · E[LAT] / T``; ``none`` is accuracy only.
λ is checkpointed and recorded per epoch. The architecture is derived by argmax α (Sec. 3, Preliminary);
with ``target``, when the final argmax is over T, the latest argmax that was within T instead.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.errors import InputError
from hwnas.search.dnas import (ARCH_TRAVEL, AlternatingConfig, ArchParams, WeightPaths, add_optimizer_flags,
                               alternate, arch_step_count, auto_arch_lr, refuse_path_training_flags)
from hwnas.search.dual_ascent import TARGET_FORMS, BudgetTerm, DualAscentConfig
from hwnas.search.objective import proxyless_add_loss, proxyless_mul_loss
from hwnas.search.strategies.base import SearchContext, SearchResult, Strategy, register_strategy
from hwnas.space import SearchSpace, is_ref, load_space
from hwnas.supernet import DropBlockSchedule, SuperNet, drop_block, gumbel_topk
from hwnas.train import classification_loss, num_batches

PHASE = "msgdas"
#: MSG-DAS's Adam learning rate of α (Sec. 4.2), the floor of the automatic one.
PAPER_ARCH_LR = 3e-4
LATENCY_LOSSES = ("target", "tfnas", "mul", "add", "none")


@dataclass(frozen=True)
class MsgdasConfig:
    """MSG-DAS settings (defaults: Sec. 4.2 of the paper; latency terms: ProxylessNAS's defaults).

    Attributes:
        k: Mutually exclusive sub-graphs per step (K; K = 1 is GDAS).
        tau_start: Gumbel-softmax temperature at the first step.
        tau_end: Temperature at the last step (linear in between).
        lambda_max: Super-net guidance weight λ at the last step (linear from 0; Table 4 best: 0.01).
        dropblock: DropBlock-identity schedule (ratio 0, then step-wise up to its maximum).
        arch_lr: Adam learning rate of α; None (default): ``hwnas.search.dnas.auto_arch_lr`` of the
            paper's ``PAPER_ARCH_LR`` (3e-4, Sec. 4.2) for the run's number of architecture steps.
        arch_betas: Adam betas of α.
        arch_weight_decay: Weight decay of α.
        weight_decay: Weight decay of the supernet weights (SGD, cosine schedule, momentum 0.9).
        warmup_epochs: Epochs of weight steps only before α moves.
        latency_loss: ``target`` (default), ``tfnas``, ``mul``, ``add`` or ``none``.
        latency_alpha: α_l of the multiplicative form.
        latency_beta: β of the multiplicative form.
        latency_lambda: λ_l of the additive and tfnas forms.
        latency_dual: λ0, η, gain and margin of the ``target`` form (margin also: ``tfnas``).
        samples: Extra architectures drawn from the final softmax(α) and scored (Pareto plot context).
    """

    k: int = 2
    tau_start: float = 10.0
    tau_end: float = 1.0
    lambda_max: float = 0.01
    dropblock: DropBlockSchedule = field(default_factory=DropBlockSchedule)
    arch_lr: float | None = None
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-4
    weight_decay: float = 3e-4
    warmup_epochs: int = 0
    latency_loss: str = "target"
    latency_alpha: float = 0.2
    latency_beta: float = 0.3
    latency_lambda: float = 0.1
    latency_dual: DualAscentConfig = field(default_factory=DualAscentConfig)
    samples: int = 8

    def __post_init__(self) -> None:
        checks = [
            (self.k >= 1, f"--msgdas-k must be >= 1, got {self.k}."),
            (self.tau_start > 0 and self.tau_end > 0,
             f"--msgdas-tau-start and --msgdas-tau-end must be positive, got {self.tau_start} and {self.tau_end}."),
            (self.lambda_max >= 0, f"--msgdas-lambda must be >= 0, got {self.lambda_max}."),
            (self.arch_lr is None or self.arch_lr > 0, f"--msgdas-arch-lr must be positive, got {self.arch_lr}."),
            (all(0 <= b < 1 for b in self.arch_betas),
             f"--msgdas-arch-betas must be in [0, 1), got {self.arch_betas}."),
            (self.arch_weight_decay >= 0 and self.weight_decay >= 0,
             "--msgdas-arch-weight-decay and --msgdas-weight-decay must be >= 0."),
            (self.warmup_epochs >= 0, f"--msgdas-warmup-epochs must be >= 0, got {self.warmup_epochs}."),
            (self.latency_loss in LATENCY_LOSSES,
             f"--msgdas-latency-loss must be one of {', '.join(LATENCY_LOSSES)}, got {self.latency_loss!r}."),
            (self.samples >= 0, f"--msgdas-samples must be >= 0, got {self.samples}."),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def tau(self, step: int, total: int) -> float:
        """τ at ``step`` of ``total``: linear from ``tau_start`` (first step) to ``tau_end`` (last step)."""
        t = step / max(1, total - 1)
        return self.tau_start + (self.tau_end - self.tau_start) * min(1.0, t)

    def guidance_weight(self, step: int, total: int) -> float:
        """λ at ``step`` of ``total``: linear from 0 (first step) to ``lambda_max`` (last step)."""
        return self.lambda_max * min(1.0, step / max(1, total - 1))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["arch_betas"] = list(self.arch_betas)
        return out


#: GDAS (Dong & Yang, CVPR 2019) as a preset of MSG-DAS: one sub-graph, no DropBlock-identity, no
#: super-net guidance, τ from 10 to 0.1 and α weight decay 1e-3 (GDAS's search scripts).
GDAS_PRESET = {"k": 1, "lambda_max": 0.0, "dropblock": DropBlockSchedule(max_ratio=0.0), "tau_start": 10.0,
               "tau_end": 0.1, "arch_weight_decay": 1e-3}
#: The msgdas flags that the preset fixes.
_GDAS_FLAGS = {"k": "--msgdas-k", "lambda_max": "--msgdas-lambda", "dropblock": "--msgdas-dropblock-max",
               "tau_start": "--msgdas-tau-start", "tau_end": "--msgdas-tau-end",
               "arch_weight_decay": "--msgdas-arch-weight-decay"}


def is_gdas(cfg: MsgdasConfig) -> bool:
    """Whether ``cfg`` is GDAS: the preset's values (DropBlock off at any schedule)."""
    return (cfg.k == 1 and cfg.lambda_max == 0.0 and cfg.dropblock.max_ratio == 0.0 and cfg.tau_start == 10.0
            and cfg.tau_end == 0.1 and cfg.arch_weight_decay == 1e-3)


# ---- the pieces of one step (public for tests and benchmarks) -------------------------------------

def sample_subgraphs(alphas: Sequence[torch.Tensor], k: int, tau: float, *,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """K exclusive straight-through one-hot samples per decision (Sec. 3.1, Alg. 1).

    Decisions with the same number of options are sampled in one batched ``gumbel_topk`` call. A
    decision with a single option (no choice, e.g. the first node's input pair of a DARTS cell) is
    that option in every sub-graph.

    Returns:
        ``out[d]``: shape (k, num_options[d]); row i is sub-graph i's one-hot choice for decision d.
    """
    groups: dict[int, list[int]] = {}
    for d, a in enumerate(alphas):
        groups.setdefault(int(a.shape[0]), []).append(d)
    out: list[torch.Tensor | None] = [None] * len(alphas)
    for n in sorted(groups):
        ds = groups[n]
        rows = gumbel_topk(torch.stack([alphas[d] for d in ds]), min(k, n), tau, generator=generator)  # k, len(ds), n
        if n == 1:
            rows = rows.expand(k, -1, -1)
        for j, d in enumerate(ds):
            out[d] = rows[:, j]
    return out  # type: ignore[return-value]


def subgraph_weights(rows: Sequence[torch.Tensor], i: int) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Sub-graph ``i``'s weight vector per decision and the one option per decision to compute."""
    weights = [r[i] for r in rows]
    return weights, [[int(w.detach().argmax())] for w in weights]


@torch.no_grad()
def guidance_probs(supernet: SuperNet, arch: ArchParams, x: torch.Tensor) -> torch.Tensor:
    """Soft labels of the whole supernet, candidates mixed by softmax(α) (Sec. 3.3, gradient-stopped).

    Runs under ``torch.no_grad``: no autograd graph, no activations kept for backward.

    Returns:
        Class probabilities, N, classes.
    """
    probs = [p.detach() for p in arch.probs()]
    return torch.softmax(supernet.weighted_forward(x, probs), dim=1)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``−Σ_c p_c^super · log p_c^sub``, averaged over the batch (the guidance term of Eq. 7)."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def subgraph_losses(supernet: SuperNet, x: torch.Tensor, y: torch.Tensor, rows: Sequence[torch.Tensor], *,
                    soft: torch.Tensor | None, lam: float,
                    identity_fn: Callable[[torch.Tensor], torch.Tensor] | None) -> tuple[list[torch.Tensor], float]:
    """Each sub-graph's ``L^k = CE(logits_k, y) + λ · CE(p_super, p_k)`` (Eq. 7) on the same batch (Fig. 2).

    Args:
        supernet: Shared weights.
        x: Images, N, 3, R, R.
        y: Labels, N.
        rows: Output of ``sample_subgraphs``.
        soft: Super-net soft labels (N, classes) or ``None`` (no guidance).
        lam: Guidance weight λ.
        identity_fn: Applied to identity candidates (DropBlock-identity) or ``None``.

    Returns:
        The K losses (graphs kept for backward) and the mean top-1 accuracy of the K sub-graphs.
    """
    k = int(rows[0].shape[0])
    losses, correct = [], 0
    for i in range(k):
        weights, compute = subgraph_weights(rows, i)
        logits = supernet.weighted_forward(x, weights, compute=compute, identity_fn=identity_fn)  # N, classes
        loss = classification_loss(logits, y)
        if soft is not None and lam > 0:
            loss = loss + lam * soft_cross_entropy(logits, soft)
        losses.append(loss)
        correct += int((logits.detach().argmax(1) == y).sum())
    return losses, correct / max(1, k * len(y))


def arch_loss(losses: Sequence[torch.Tensor], expected: torch.Tensor,
              latency_term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The architecture loss: the latency term applied once to the summed sub-graph losses (Fig. 2).

    The K sub-graphs share one α and so one E[LAT]; adding the term per sub-graph would count an
    additive term K times (Σ_k (L_k + λ·E/T) = Σ_k L_k + K·λ·E/T), so K would change the accuracy /
    latency trade-off. A multiplicative term is the same either way.
    """
    return latency_term(torch.stack(list(losses)).sum(), expected)


def _onehot_rows(rows: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Exact one-hot copies of straight-through rows (weight steps need no gradient to α)."""
    return [F.one_hot(r.detach().argmax(-1), r.shape[-1]).to(r.dtype) for r in rows]


def path_rows(path: Sequence[int], num_options: Sequence[int]) -> list[torch.Tensor]:
    """One sub-graph's one-hot rows (1, n) per decision for the option indices ``path``."""
    return [F.one_hot(torch.tensor([int(o)]), int(n)).float() for o, n in zip(path, num_options)]


# ---- the strategy ----------------------------------------------------------------------------------

@register_strategy("msgdas")
class Msgdas(Strategy):
    """MSG-DAS with a latency loss; see the module docstring.

    ``weight_paths`` (K = 1 only): a learned sampler proposes the paths the weight steps train
    (TNAS-G, ``hwnas.search.strategies.tnas``); the architecture steps are unchanged.
    """

    def __init__(self, *, config: MsgdasConfig, weight_paths: WeightPaths | None = None) -> None:
        if weight_paths is not None and config.k != 1:
            raise ValueError("proposed weight paths need K = 1 (one sub-graph per step)")
        self.config, self.weight_paths = config, weight_paths

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        c, db = MsgdasConfig(), DropBlockSchedule()
        p.add_argument("--msgdas-k", type=int, default=c.k, help="MSG-DAS: exclusive sub-graphs per step (1 = GDAS)")
        p.add_argument("--msgdas-tau-start", type=float, default=c.tau_start,
                       help="MSG-DAS: initial Gumbel temperature")
        p.add_argument("--msgdas-tau-end", type=float, default=c.tau_end, help="MSG-DAS: final Gumbel temperature")
        p.add_argument("--msgdas-lambda", type=float, default=c.lambda_max,
                       help="MSG-DAS: final super-net guidance weight (linear from 0; 0 turns guidance off)")
        p.add_argument("--msgdas-dropblock-max", type=float, default=db.max_ratio,
                       help="MSG-DAS: final DropBlock ratio of identity candidates (starts at 0)")
        p.add_argument("--msgdas-dropblock-steps", type=int, default=db.steps,
                       help="MSG-DAS: increments of the step-wise DropBlock ratio")
        p.add_argument("--msgdas-dropblock-size", type=int, default=db.block_size, help="MSG-DAS: DropBlock block side")
        add_optimizer_flags(p, prefix="--msgdas", label="MSG-DAS", what="alpha",
                            arch_lr_help=f"default: max({PAPER_ARCH_LR:g}, {ARCH_TRAVEL:g}/architecture steps), "
                                         f"so alpha can move in a short run",
                            arch_betas=c.arch_betas, arch_weight_decay=c.arch_weight_decay,
                            weight_decay=c.weight_decay, warmup_epochs=c.warmup_epochs)
        p.add_argument("--msgdas-latency-loss", choices=LATENCY_LOSSES, default=c.latency_loss,
                       help="MSG-DAS: latency term: target (default; LightNAS, CE + lambda*(E[LAT]/T_eff - 1), "
                            "lambda by dual ascent), tfnas (CE + l*|E[LAT]/T_eff - 1|), the paper's mul "
                            "(CE*a*(log E[LAT]/log T)^b) or add (CE + l*E[LAT]/T), none")
        p.add_argument("--msgdas-latency-alpha", type=float, default=c.latency_alpha, help="MSG-DAS: a of mul")
        p.add_argument("--msgdas-latency-beta", type=float, default=c.latency_beta, help="MSG-DAS: b of mul")
        p.add_argument("--msgdas-latency-lambda", type=float, default=c.latency_lambda,
                       help="MSG-DAS: l of add and tfnas")
        DualAscentConfig.add_arguments(p, prefix="--msgdas-latency")
        p.add_argument("--msgdas-samples", type=int, default=c.samples,
                       help="MSG-DAS: architectures drawn from the final softmax(alpha) and scored besides argmax")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Msgdas":
        return cls.checked(args, cls.config_from_args(args))

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> MsgdasConfig:
        """The msgdas flags as a config (not yet checked against the space and the sharing mode)."""
        return MsgdasConfig(
            k=args.msgdas_k, tau_start=args.msgdas_tau_start, tau_end=args.msgdas_tau_end,
            lambda_max=args.msgdas_lambda,
            dropblock=DropBlockSchedule(max_ratio=args.msgdas_dropblock_max, steps=args.msgdas_dropblock_steps,
                                        block_size=args.msgdas_dropblock_size),
            arch_lr=args.msgdas_arch_lr, arch_betas=tuple(args.msgdas_arch_betas),
            arch_weight_decay=args.msgdas_arch_weight_decay, weight_decay=args.msgdas_weight_decay,
            warmup_epochs=args.msgdas_warmup_epochs, latency_loss=args.msgdas_latency_loss,
            latency_alpha=args.msgdas_latency_alpha, latency_beta=args.msgdas_latency_beta,
            latency_lambda=args.msgdas_latency_lambda,
            latency_dual=DualAscentConfig.from_args(args, prefix="--msgdas-latency"), samples=args.msgdas_samples)

    @classmethod
    def checked(cls, args: argparse.Namespace, config: MsgdasConfig) -> "Msgdas":
        """The strategy with ``config``, refused (``InputError``) where the space or the flags cannot serve it."""
        strategy = cls(config=config)
        strategy.check_space(load_space(args.space))  # before the run directory exists
        refuse_path_training_flags(args, strategy="msgdas", warmup_flag="--msgdas-warmup-epochs")
        if strategy.config.k > 1 and getattr(args, "weight_sharing", "separate") == "entangled":
            raise InputError(f"--msgdas-k {strategy.config.k} needs --weight-sharing separate: with entangled sharing "
                             f"the K sub-graphs share candidate modules, so they are not mutually exclusive "
                             f"(MSG-DAS, Sec. 3.1, Eq. 2).")
        return strategy

    def settings(self) -> dict[str, Any]:
        return self.config.to_json()

    # ---- checks ------------------------------------------------------------------------------

    def check_space(self, space: SearchSpace) -> None:
        """Raises ``InputError`` when K sub-graphs cannot be exclusive or the guidance pass cannot mix."""
        k = self.config.k
        for d, n in zip(space.decisions, space.num_options):
            if 1 < n < k:
                raise InputError(f"--msgdas-k {k} exceeds the {n} options of decision {d.name} of space "
                                 f"{space.name}: the K sub-graphs must be mutually exclusive.")
        if self.config.lambda_max > 0 and any(is_ref(s.width) for s in space.spec.stages):
            raise InputError(f"space {space.name} has width decisions whose candidates cannot be mixed in the "
                             f"super-net guidance pass; pass --msgdas-lambda 0.")

    # ---- search ------------------------------------------------------------------------------

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg = self.config
        supernet, ds, predictor, tc = ctx.supernet, ctx.dataset, ctx.predictor, ctx.train_config
        self.check_space(ctx.space)
        arch = ArchParams(ctx.space.num_options)
        a_lr = cfg.arch_lr if cfg.arch_lr is not None else auto_arch_lr(
            PAPER_ARCH_LR, arch_steps=arch_step_count(ds, epochs=tc.epochs, warmup_epochs=cfg.warmup_epochs,
                                                      batch_size=tc.batch_size))
        loop = AlternatingConfig(epochs=tc.epochs, batch_size=tc.batch_size, w_lr=tc.lr, w_momentum=0.9, w_nesterov=False,
                                 w_weight_decay=cfg.weight_decay, a_lr=a_lr, a_betas=cfg.arch_betas,
                                 a_weight_decay=cfg.arch_weight_decay, warmup_epochs=cfg.warmup_epochs,
                                 checkpoint_every=tc.checkpoint_every)
        total = num_batches(ds.train, batch_size=tc.batch_size, drop_last=True) * tc.epochs
        target = ctx.constraints.latency_ms
        term = (BudgetTerm(form=cfg.latency_loss, budget=target, config=cfg.latency_dual,
                           fixed_lambda=cfg.latency_lambda, state=((ctx.state or {}).get("strategy") or {}).get("term"))
                if cfg.latency_loss in TARGET_FORMS else None)

        def latency_term(loss: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
            if term is not None:
                return term.loss(loss, expected)
            if cfg.latency_loss == "mul":
                return proxyless_mul_loss(loss, expected, target, alpha=cfg.latency_alpha, beta=cfg.latency_beta)
            if cfg.latency_loss == "add":
                return proxyless_add_loss(loss, expected, target, lam=cfg.latency_lambda)
            return loss

        wp = self.weight_paths

        def run_subgraphs(x, y, rng, step, *, train_alpha: bool, path: np.ndarray | None = None):
            tau, lam = cfg.tau(step, total), cfg.guidance_weight(step, total)
            ratio = cfg.dropblock.ratio(step, total)
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            alphas = list(arch.alphas) if train_alpha else [a.detach() for a in arch.alphas]
            rows = sample_subgraphs(alphas, cfg.k, tau, generator=gen)
            if not train_alpha:
                rows = _onehot_rows(rows) if path is None else path_rows(path, ctx.space.num_options)
            soft = guidance_probs(supernet, arch, x) if lam > 0 else None
            identity = (partial(drop_block, drop_prob=ratio, block_size=cfg.dropblock.block_size)
                        if ratio > 0 else None)
            losses, acc = subgraph_losses(supernet, x, y, rows, soft=soft, lam=lam, identity_fn=identity)
            return losses, {"acc": acc, "tau": tau, "lambda": lam, "dropblock": ratio}

        def weight_step(x, y, rng, step):
            path = None if wp is None else wp.propose(step)
            losses, metrics = run_subgraphs(x, y, rng, step, train_alpha=False, path=path)
            loss = torch.stack(losses).sum()  # Fig. 2: the sub-graphs' losses are summed
            loss.backward()
            return {"loss": float(loss.detach()), **metrics}

        def arch_step(x, y, rng, step):
            losses, metrics = run_subgraphs(x, y, rng, step, train_alpha=True)
            expected = predictor.expected_latency(arch.probs())  # ms, differentiable in α
            loss = arch_loss(losses, expected, latency_term)
            loss.backward()
            lam = {} if term is None else {"lambda": term.lam, "coefficient": term.coefficient}
            return {"loss": float(loss.detach()), "subgraph_loss": float(sum(float(lk.detach()) for lk in losses)),
                    "expected_latency_ms": float(expected.detach()), "acc": metrics["acc"], **lam}

        def after_arch_step(step: int) -> None:  # dual ascent on the new argmax architecture
            derived = arch.derive()
            term.update(float(ctx.costs.latency(derived[None])[0]), derived)

        def on_epoch(epoch: int) -> dict[str, Any]:
            with torch.no_grad():
                expected = float(predictor.expected_latency(arch.probs()))
            derived = arch.derive()
            return {"expected_latency_ms": expected, "derived_latency_ms": float(ctx.costs.latency(derived[None])[0]),
                    **({} if term is None else {"lambda": term.lam}), **({} if wp is None else wp.on_epoch(epoch))}

        def extra_state() -> dict[str, Any]:
            mine = {**({} if term is None else {"term": term.state()}),
                    **({} if wp is None else {"proposal": wp.state()})}
            return {"strategy": mine} if mine else {}

        alternate(supernet=supernet, arch=arch, ds=ds, config=loop, seed=ctx.seed, run=ctx.run, phase=PHASE,
                  weight_step=weight_step, arch_step=arch_step, state=ctx.state, on_epoch=on_epoch,
                  extra_state=extra_state,
                  after_arch_step=None if term is None or term.form != "target" else after_arch_step)
        return self._derive(ctx, arch, term=term, arch_lr=a_lr)

    def _derive(self, ctx: SearchContext, arch: ArchParams, *, term: BudgetTerm | None,
                arch_lr: float) -> SearchResult:
        """Argmax α, scored with the supernet's weights, plus per-epoch derived and sampled candidates."""
        history = [h for h in ctx.run.history() if h.get("phase") == PHASE]
        heatmap = ctx.heatmap(history, title=f"MSG-DAS (K={self.config.k}) on {ctx.space.name}: softmax(alpha) per "
                                             f"epoch")
        argmax = arch.derive()  # target loss: maybe the visited argmax nearest under T
        derived = argmax if term is None else term.end_point(argmax, float(ctx.costs.latency(argmax[None])[0]))
        pool = [derived, argmax] + [np.asarray(h["derived"], dtype=np.int64) for h in history]
        rng = np.random.default_rng([ctx.seed, 31])
        with torch.no_grad():
            probs = [p.numpy() for p in arch.probs()]
        for _ in range(self.config.samples):
            pool.append(np.array([rng.choice(len(p), p=p / p.sum()) for p in probs], dtype=np.int64))
        candidates = ctx.evaluate(pool)
        with torch.no_grad():
            expected = float(ctx.predictor.expected_latency(arch.probs()))
        extra = {"k": self.config.k, "gdas": is_gdas(self.config), "derived": [int(v) for v in derived],
                 "derived_feasible": bool(ctx.feasible(derived[None])[0]), "expected_latency_ms": expected,
                 "final_probs": arch.snapshot(), "heatmap": heatmap, "latency_loss": self.config.latency_loss,
                 "lambda": None if term is None else term.lam, "arch_lr": arch_lr}
        return SearchResult(best=derived, score=candidates[0]["accuracy"], candidates=candidates, extra=extra)


@register_strategy("gdas")
class Gdas(Msgdas):
    """GDAS (Dong & Yang, CVPR 2019): MSG-DAS with ``GDAS_PRESET`` (K = 1 Gumbel-softmax path, no
    DropBlock, no guidance, τ 10 → 0.1, α weight decay 1e-3); the other msgdas flags apply. A
    fixed flag set to anything but its msgdas default is refused (exit 2)."""

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        """None of its own: the msgdas flags (registered by ``Msgdas``) configure it."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Gdas":
        base, default = cls.config_from_args(args), MsgdasConfig()
        for name, flag in _GDAS_FLAGS.items():
            if getattr(base, name) != getattr(default, name):
                raise InputError(f"--strategy gdas fixes {flag} (GDAS: K = 1, no DropBlock, no guidance, tau 10 to "
                                 f"0.1, alpha weight decay 1e-3); use --strategy msgdas to change it.")
        return cls.checked(args, replace(base, **GDAS_PRESET))
