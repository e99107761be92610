"""``darts``: Differentiable Architecture Search (Liu et al., ICLR 2019), first and second order, with latency.

Every relaxed choice d gets logits α_d. Its mixed op is the softmax-weighted sum of *all* its
candidates, o̅(x) = Σ_k softmax(α_d)_k·o_k(x) (Sec. 2.1, Eq. 2). The relaxed choices are the space's
decisions on chain spaces and NAS-Bench-201 (``SuperNet.weighted_forward``), and the 2 × 14 edges of
Eq. 1 on the ``darts`` space, whose own decisions are discrete genotypes (``hwnas.search.relaxation``).
On a cell edge the ``none`` candidate is DARTS's zero op. Weights (SGD on the training split) and α
(Adam on the validation split) alternate (Alg. 1):

* first order (``--darts-order 1``): ∇_α L_val(w, α), i.e. ξ = 0 in Eq. 6;
* second order (``--darts-order 2``): the unrolled step w' = w − ξ·∇_w L_train(w, α), with ξ the
  weights' current learning rate, and the gradient of Eq. 7,
  ∇_α L_val(w', α) − ξ·∇²_{α,w} L_train(w, α)·∇_{w'} L_val(w', α), whose Hessian-vector product is
  the finite difference of Eq. 8, (∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / 2ε with
  w± = w ± ε·∇_{w'} L_val(w', α) and ε = 0.01 / ‖∇_{w'} L_val(w', α)‖ (``unrolled_gradient``).

The architecture is derived by the argmax of each choice's non-``none`` softmax weights, and on the
``darts`` space each node keeps its two strongest inputs (Sec. 2.4).

Memory: every candidate of every decision runs and keeps its activations for backward, so the
step's activation memory grows with the number of candidates (ProxylessNAS's motivation, Cai et al.
2019, Sec. 1). ``estimate_activation_gb`` bounds it before anything is built, and a configuration
above ``--darts-max-memory-gb`` (default 80% of this machine's RAM) is refused.

Hardware terms, as for the other gradient strategies: the expected latency under softmax(α) (exact on
the space's decisions; on the ``darts`` space, of the derived cell, ``DartsCellRelaxation``) with
LightNAS's budget-targeting term (``target``, λ by dual ascent), ``tfnas`` or ``none``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.latency import LatencyTable
from hwnas.search.dnas import (AlternatingConfig, ArchParams, TrainBatch, add_optimizer_flags, alternate,
                               arch_step_count, auto_arch_lr, refuse_path_training_flags)
from hwnas.search.dual_ascent import TARGET_FORMS, BudgetTerm, DualAscentConfig
from hwnas.search.relaxation import Relaxation, candidate_blocks, relaxation_for
from hwnas.search.strategies.base import SearchContext, SearchResult, Strategy, register_strategy
from hwnas.space import ArchSettings, Block, is_ref, load_space
from hwnas.train import classification_loss

PHASE = "darts"
#: DARTS's Adam learning rate of α (Sec. 3.1.2: 3e-4), the floor of the automatic one.
PAPER_ARCH_LR = 3e-4
LATENCY_LOSSES = ("target", "tfnas", "none")
#: Activation tensors kept per block output for backward (conv, BN and activation outputs).
SAVED_PER_BLOCK = 3


def total_ram_gb() -> float:
    """Physical memory of this machine, GiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30


def estimate_activation_gb(blocks: Sequence[Block], *, batch: int, order: int) -> float:
    """Activation memory of one DARTS step with every candidate kept for backward, GiB (float32).

    Counts each candidate block's input, output and (for inverted residuals) expanded tensors,
    ``SAVED_PER_BLOCK`` times, for a batch; the second order holds a second graph (the unrolled
    step) at a time, so twice that. An estimate, for refusing configurations early.

    Args:
        blocks: Every block the mixed forward computes (``candidate_blocks``).
        batch: Images per step.
        order: 1 or 2.
    """
    elements = 0.0
    for b in blocks:
        ohw = b.out_hw
        elements += b.cin * b.hw ** 2 + b.cout * ohw ** 2 + (b.mid or 0) * (b.hw ** 2 + ohw ** 2)
    return SAVED_PER_BLOCK * elements * batch * 4 * (2 if order == 2 else 1) / 2 ** 30


def unrolled_gradient(*, weights: Sequence[torch.Tensor], alphas: Sequence[torch.Tensor],
                      train_loss: Callable[[], torch.Tensor], val_loss: Callable[[], torch.Tensor],
                      xi: float, average: Callable[[Sequence[torch.Tensor | None]], None] = lambda ts: None,
                      ) -> list[torch.Tensor]:
    """DARTS's second-order architecture gradient (Eq. 7), with the finite-difference Hessian-vector
    product of Eq. 8. The weights are changed in place during the call and restored at its end.

    Args:
        weights: w, the supernet parameters (leaves).
        alphas: α, the architecture parameters (leaves).
        train_loss: L_train(w, α) at the weights' current values.
        val_loss: L_val(w, α) at the weights' current values.
        xi: ξ, the learning rate of the virtual step w' = w − ξ·∇_w L_train(w, α).
        average: Averages weight gradients over the processes of a data-parallel run, in place
            (``Distributed.average_``): ∇_w L_train and ∇_w' L_val are taken on each process's share
            of the batch, and w' and w± must be those of the global batch. The α gradient returned
            is this process's share; the caller averages it as any other gradient. One process:
            nothing to do.

    Returns:
        ∇_α L_val(w', α) − ξ·(∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / 2ε, one tensor per α.
    """
    weights, alphas = list(weights), list(alphas)
    w0 = [w.detach().clone() for w in weights]
    g_train = torch.autograd.grad(train_loss(), weights, allow_unused=True)
    average(g_train)
    with torch.no_grad():
        for w, g in zip(weights, g_train):
            if g is not None:
                w.sub_(xi * g)  # w' (Eq. 6)
    grads = torch.autograd.grad(val_loss(), alphas + weights, allow_unused=True)
    d_alpha = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads[:len(alphas)])]
    d_w = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads[len(alphas):])]
    average(d_w)
    norm = float(torch.sqrt(sum((g * g).sum() for g in d_w)))
    eps = 0.01 / norm if norm > 0 else 0.0

    def alpha_grad_at(sign: float) -> list[torch.Tensor]:
        with torch.no_grad():
            for w, base, g in zip(weights, w0, d_w):
                w.copy_(base + sign * eps * g)
        gs = torch.autograd.grad(train_loss(), alphas, allow_unused=True)
        return [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, gs)]

    if eps > 0:
        plus, minus = alpha_grad_at(1.0), alpha_grad_at(-1.0)
        hvp = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
    else:
        hvp = [torch.zeros_like(a) for a in alphas]
    with torch.no_grad():
        for w, base in zip(weights, w0):
            w.copy_(base)
    return [da - xi * h for da, h in zip(d_alpha, hvp)]


@dataclass(frozen=True)
class DartsConfig:
    """DARTS settings (defaults: Sec. 3.1.2 of the paper).

    Attributes:
        order: 1 (ξ = 0) or 2 (the unrolled step, Eq. 6-8).
        arch_lr: Adam learning rate of α; None: ``auto_arch_lr`` of 3e-4.
        arch_betas: Adam betas of α (0.5, 0.999).
        arch_weight_decay: Weight decay of α (1e-3).
        weight_decay: Weight decay of the weights (3e-4).
        warmup_epochs: Epochs of weight steps before α moves.
        latency_loss: ``target`` (default), ``tfnas`` or ``none``.
        latency_lambda: λ of ``tfnas``.
        latency_dual: λ0, η, gain and margin of ``target``.
        max_memory_gb: Refuse a configuration whose estimated activation memory exceeds this (GiB);
            None: 80% of the machine's RAM.
    """

    order: int = 1
    arch_lr: float | None = None
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    weight_decay: float = 3e-4
    warmup_epochs: int = 0
    latency_loss: str = "target"
    latency_lambda: float = 0.1
    latency_dual: DualAscentConfig = field(default_factory=DualAscentConfig)
    max_memory_gb: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.order in (1, 2), f"--darts-order must be 1 or 2, got {self.order}."),
            (self.arch_lr is None or self.arch_lr > 0, f"--darts-arch-lr must be positive, got {self.arch_lr}."),
            (all(0 <= b < 1 for b in self.arch_betas), f"--darts-arch-betas must be in [0, 1), got {self.arch_betas}."),
            (self.arch_weight_decay >= 0 and self.weight_decay >= 0,
             "--darts-arch-weight-decay and --darts-weight-decay must be >= 0."),
            (self.warmup_epochs >= 0, f"--darts-warmup-epochs must be >= 0, got {self.warmup_epochs}."),
            (self.latency_loss in LATENCY_LOSSES,
             f"--darts-latency-loss must be one of {', '.join(LATENCY_LOSSES)}, got {self.latency_loss!r}."),
            (self.max_memory_gb is None or self.max_memory_gb > 0,
             f"--darts-max-memory-gb must be positive, got {self.max_memory_gb}."),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["arch_betas"] = list(self.arch_betas)
        return out


@register_strategy("darts")
class Darts(Strategy):
    """DARTS with latency; see the module docstring."""

    def __init__(self, *, config: DartsConfig) -> None:
        self.config = config

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        c = DartsConfig()
        p.add_argument("--darts-order", type=int, choices=(1, 2), default=c.order,
                       help="DARTS: 1 = first order (xi = 0), 2 = the unrolled second-order step (Eq. 6-8)")
        add_optimizer_flags(p, prefix="--darts", label="DARTS", what="alpha",
                            arch_lr_help=f"default: max({PAPER_ARCH_LR:g}, 3/architecture steps)",
                            arch_betas=c.arch_betas, arch_weight_decay=c.arch_weight_decay,
                            weight_decay=c.weight_decay, warmup_epochs=c.warmup_epochs)
        p.add_argument("--darts-latency-loss", choices=LATENCY_LOSSES, default=c.latency_loss,
                       help="DARTS: latency term on E[LAT] under softmax(alpha): target (default), tfnas or none")
        p.add_argument("--darts-latency-lambda", type=float, default=c.latency_lambda, help="DARTS: lambda of tfnas")
        DualAscentConfig.add_arguments(p, prefix="--darts-latency")
        p.add_argument("--darts-max-memory-gb", type=float, default=None,
                       help="DARTS keeps every candidate's activations: refuse a run whose estimated activation "
                            "memory exceeds this, GiB (default: 80%% of RAM)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Darts":
        cfg = DartsConfig(
            order=args.darts_order, arch_lr=args.darts_arch_lr, arch_betas=tuple(args.darts_arch_betas),
            arch_weight_decay=args.darts_arch_weight_decay, weight_decay=args.darts_weight_decay,
            warmup_epochs=args.darts_warmup_epochs, latency_loss=args.darts_latency_loss,
            latency_lambda=args.darts_latency_lambda,
            latency_dual=DualAscentConfig.from_args(args, prefix="--darts-latency"),
            max_memory_gb=args.darts_max_memory_gb)
        refuse_path_training_flags(args, strategy="darts", warmup_flag="--darts-warmup-epochs")
        space = load_space(args.space)
        if any(is_ref(st.width) for st in getattr(space.spec, "stages", ())):
            raise InputError(f"--strategy darts on space {space.name}: its width decisions give candidates of "
                             f"different shapes, which a mixed op cannot sum (Eq. 2); use nasp or proxyless.")
        strategy = cls(config=cfg)
        table = LatencyTable.load(args.table)
        s = ArchSettings.of(table, space)
        strategy.check_memory(space, settings=ArchSettings(resolution=args.resolution or s.resolution,
                                                           width_mult=args.width_mult or s.width_mult,
                                                           num_classes=s.num_classes),
                              batch=args.batch_size)  # before the run directory exists
        return strategy

    def settings(self) -> dict[str, Any]:
        return self.config.to_json()

    def check_memory(self, space, *, settings: ArchSettings, batch: int) -> float:
        """The estimated activation memory (GiB); ``InputError`` above the limit."""
        limit = self.config.max_memory_gb or 0.8 * total_ram_gb()
        blocks = candidate_blocks(space, resolution=settings.resolution, width_mult=settings.width_mult,
                                  num_classes=settings.num_classes)
        gb = estimate_activation_gb(blocks, batch=batch, order=self.config.order)
        if gb > limit:
            raise InputError(f"DARTS keeps every candidate's activations: this run needs about {gb:.2f} GiB "
                             f"(batch {batch}, order {self.config.order}), over --darts-max-memory-gb "
                             f"{limit:.2f}; lower --batch-size or --width-mult, or use nasp.")
        return gb

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg = self.config
        memory_gb = self.check_memory(ctx.space, settings=ctx.settings, batch=ctx.train_config.batch_size)
        supernet, ds, predictor, tc = ctx.supernet, ctx.dataset, ctx.predictor, ctx.train_config
        relax = relaxation_for(supernet=supernet, predictor=predictor)
        arch = ArchParams(relax.num_options)
        gen = torch.Generator().manual_seed(int(ctx.seed))
        with torch.no_grad():  # DARTS's start: α = 1e-3·N(0, 1)
            for a in arch.alphas:
                a.copy_(1e-3 * torch.randn(a.shape, generator=gen))
        a_lr = cfg.arch_lr if cfg.arch_lr is not None else auto_arch_lr(
            PAPER_ARCH_LR, arch_steps=arch_step_count(ds, epochs=tc.epochs, warmup_epochs=cfg.warmup_epochs,
                                                      batch_size=tc.batch_size))
        loop = AlternatingConfig(epochs=tc.epochs, batch_size=tc.batch_size, w_lr=tc.lr, w_momentum=0.9,
                                 w_nesterov=False, w_weight_decay=cfg.weight_decay, a_lr=a_lr, a_betas=cfg.arch_betas,
                                 a_weight_decay=cfg.arch_weight_decay, warmup_epochs=cfg.warmup_epochs,
                                 checkpoint_every=tc.checkpoint_every)
        term = (BudgetTerm(form=cfg.latency_loss, budget=ctx.constraints.latency_ms, config=cfg.latency_dual,
                           fixed_lambda=cfg.latency_lambda, state=((ctx.state or {}).get("strategy") or {}).get("term"))
                if cfg.latency_loss in TARGET_FORMS else None)
        weights = [p for p in supernet.parameters() if p.requires_grad]

        def ce_at(x, y, probs) -> torch.Tensor:
            return classification_loss(relax.forward(x, probs), y)

        def weight_step(x, y, rng, step):
            loss = ce_at(x, y, [p.detach() for p in arch.probs()])
            loss.backward()
            return {"loss": float(loss.detach())}

        def hardware(ce: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            expected = relax.expected_latency(arch.probs())  # ms, differentiable in α
            return (term.loss(ce, expected) if term is not None else ce), expected

        def arch_step(x, y, rng, step):  # first order: ∇_α L_val(w, α)
            ce = ce_at(x, y, arch.probs())
            loss, expected = hardware(ce)
            loss.backward()
            return {"loss": float(loss.detach()), "ce": float(ce.detach()),
                    "expected_latency_ms": float(expected.detach())}

        def unrolled_step(x, y, train: TrainBatch, rng, step):  # second order: Eq. 7-8
            alphas = list(arch.alphas)
            grads = unrolled_gradient(weights=weights, alphas=alphas,
                                      train_loss=lambda: ce_at(train.x, train.y, arch.probs()),
                                      val_loss=lambda: ce_at(x, y, arch.probs()), xi=train.lr,
                                      average=ctx.run.dist.average_)
            extra, expected = hardware(torch.zeros(()))  # the latency term's own gradient (it has no w)
            if extra.requires_grad:
                extra.backward(inputs=alphas)
            for a, g in zip(alphas, grads):
                a.grad = g if a.grad is None else a.grad + g
            return {"latency_term": float(extra.detach()), "expected_latency_ms": float(expected.detach())}

        def after_arch_step(step: int) -> None:
            derived = relax.derive(arch.alphas)
            term.update(float(ctx.costs.latency(derived[None])[0]), derived)

        def on_epoch(epoch: int) -> dict[str, Any]:
            derived = relax.derive(arch.alphas)
            return {"derived_non_none": derived.tolist(),
                    "derived_latency_ms": float(ctx.costs.latency(derived[None])[0]),
                    **({} if term is None else {"lambda": term.lam})}

        alternate(supernet=supernet, arch=arch, ds=ds, config=loop, seed=ctx.seed, run=ctx.run, phase=PHASE,
                  weight_step=weight_step, arch_step=arch_step if cfg.order == 1 else None,
                  unrolled_arch_step=unrolled_step if cfg.order == 2 else None, state=ctx.state,
                  on_epoch=on_epoch, extra_state=lambda: {} if term is None else {"strategy": {"term": term.state()}},
                  after_arch_step=None if term is None or term.form != "target" else after_arch_step)
        return self._result(ctx, arch, relax, term=term, arch_lr=a_lr, memory_gb=memory_gb)

    def _result(self, ctx: SearchContext, arch: ArchParams, relax: Relaxation, *, term: BudgetTerm | None,
                arch_lr: float, memory_gb: float) -> SearchResult:
        history = [h for h in ctx.run.history() if h.get("phase") == PHASE]
        space = ctx.space
        heatmap = ctx.heatmap(history, title=f"DARTS (order {self.config.order}) on {space.name}: softmax(alpha) "
                                             f"per epoch", labels=relax.labels())
        final = relax.derive(arch.alphas)
        derived = final if term is None else term.end_point(final, float(ctx.costs.latency(final[None])[0]))
        per_epoch = [np.asarray(h["derived_non_none"], dtype=np.int64) for h in history]
        candidates = ctx.evaluate([derived, final] + per_epoch)
        with torch.no_grad():
            expected = float(relax.expected_latency(arch.probs()))
        extra = {"order": self.config.order, "derived": [int(v) for v in derived],
                 "derived_feasible": bool(ctx.feasible(derived[None])[0]), "expected_latency_ms": expected,
                 "final_probs": arch.snapshot(), "heatmap": heatmap, "latency_loss": self.config.latency_loss,
                 "lambda": None if term is None else term.lam, "arch_lr": arch_lr,
                 "estimated_activation_gb": memory_gb}
        return SearchResult(best=derived, score=candidates[0]["accuracy"], candidates=candidates, extra=extra)
