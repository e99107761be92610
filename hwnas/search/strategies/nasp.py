"""``nasp``: differentiable NAS with proximal iterations (Yao et al., AAAI 2020), with hardware terms.

The architecture A holds one row per decision (an edge of a cell, a layer of a chain) and one
column per option (Sec. 3.1, Fig. 1(d)). The search keeps A in the box C2 = {0 ≤ A ≤ 1} and runs
the network with the discrete Ā, C1 = {‖Ā_row‖₀ = 1}: each row's largest entry kept, the others
zeroed (Sec. 3.2, Proposition 1: prox_{C1 ∩ C2} = prox_C1 ∘ prox_C2, ``proximal``). The mixed op
Σ_k Ā_k·o_k(x) takes Ā as it is, with no softmax, so only the selected op of each row runs, forward
and backward. As in the authors' code (``proximal_step`` sets the kept entry to 1), the kept entry
is 1 in the network (``binarize``): the same architecture as Proposition 1's Ā, without scaling
each layer's output by A's value. One iteration (Algorithm 1):

1. Ā = prox_C1(A);
2. A ← prox_C2(A − ε·∇_Ā L_val(w, Ā)): the gradient is taken at the discrete Ā (no second-order
   term) and applied to the continuous A, which is then clipped to the box;
3. Ā = prox_C1(A);
4. w ← w − η·∇_w L_train(w, Ā), through the selected ops only.

The searched architecture is the final Ā (step 8: no deriving step). ``hwnas.search.dnas.alternate``
runs weight step 4 and then steps 1–3 for the next iteration. ε is applied by Adam, as in the
authors' code, which binarizes, back-propagates, restores A and clips after the optimizer step.

Model complexity (Sec. 3.3, Eq. 11–12): ``η_p · R(Ā)`` with R(Ā) = Σ_d Σ_k (p_dk / p̄_d)·Ā_dk², where p_dk
is option k's parameter count at decision d (the exact marginal of ``BatchPredictor.expected_params``
at uniform probabilities) and p̄_d = Σ_k p_dk. On a cell space, where every edge offers the same op
set, this is the paper's per-column weight p_i / p̄ up to the edges' channel counts.

Hardware terms: Ā is one-hot, so the table's exact expected latency at Ā is the selected
architecture's predicted latency, and its gradient w.r.t. Ā_dk is what switching decision d to
option k would cost. The default ``target`` form is LightNAS's budget-targeting term with λ by dual
ascent (``hwnas.search.dual_ascent``), as for ProxylessNAS and MSG-DAS; ``tfnas`` and ``none``
stay selectable.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.search.dnas import (AlternatingConfig, ArchParams, add_optimizer_flags, alternate, arch_step_count,
                               refuse_path_training_flags)
from hwnas.search.dual_ascent import TARGET_FORMS, BudgetTerm, DualAscentConfig
from hwnas.search.strategies.base import SearchContext, SearchResult, Strategy, register_strategy
from hwnas.train import classification_loss

PHASE = "nasp"
#: Adam learning rate of A in the authors' code (DARTS's), the floor of the automatic one.
PAPER_ARCH_LR = 3e-4
#: How far each entry of A may travel over a run at the automatic rate: the width of the box.
BOX_TRAVEL = 1.0
LATENCY_LOSSES = ("target", "tfnas", "none")


def prox_box(a: torch.Tensor) -> torch.Tensor:
    """prox_C2: A clipped to [0, 1] entry-wise (Proposition 1)."""
    return a.clamp(0.0, 1.0)


def prox_one_hot(a: torch.Tensor) -> torch.Tensor:
    """prox_C1 of a row (or of each row of a matrix): its largest entry kept, the others 0.

    Ties go to the first largest entry.

    Example: ``prox_one_hot(tensor([0.2, 0.7, 0.7, 0.1]))`` → ``[0, 0.7, 0, 0]``.
    """
    idx = a.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(a).scatter(-1, idx, a.gather(-1, idx))


def binarize(a: torch.Tensor) -> torch.Tensor:
    """The Ā the network runs: 1 at each row's largest entry of A, 0 elsewhere (the authors' code)."""
    return torch.zeros_like(a).scatter(-1, a.argmax(dim=-1, keepdim=True), 1.0)


def proximal(a: torch.Tensor) -> torch.Tensor:
    """prox_C = prox_C1 ∘ prox_C2 (Proposition 1): clip to the box, then keep each row's largest entry."""
    return prox_one_hot(prox_box(a))


class BoxArchParams(ArchParams):
    """A: one row per decision in the box [0, 1], initialized like DARTS's α (1e-3·N(0, 1), seeded)
    and then clipped. ``snapshot`` records A itself (not a softmax); ``derive`` is argmax per row."""

    def __init__(self, num_options: Sequence[int], *, seed: int) -> None:
        super().__init__(num_options)
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for a in self.alphas:
                a.copy_(prox_box(1e-3 * torch.randn(a.shape, generator=gen)))

    def discrete(self) -> list[torch.Tensor]:
        """Ā per decision (``binarize`` of prox_C2(A)), as fresh leaves whose gradient is ∂L/∂Ā."""
        return [binarize(prox_box(a.detach())).requires_grad_(True) for a in self.alphas]

    def clip(self) -> None:
        """A ← prox_C2(A) after the optimizer step (Algorithm 1, step 4)."""
        with torch.no_grad():
            for a in self.alphas:
                a.copy_(prox_box(a))

    def snapshot(self) -> list[list[float]]:
        with torch.no_grad():
            return [[round(float(v), 6) for v in a] for a in self.alphas]


def selected(abar: Sequence[torch.Tensor]) -> list[list[int]]:
    """The one option per decision that Ā runs (its non-zero entry; the first where a row is all 0)."""
    return [[int(b.detach().argmax())] for b in abar]


def params_weights(predictor, num_options: Sequence[int]) -> list[torch.Tensor]:
    """p_dk / p̄_d of Sec. 3.3 per decision: option k's share of decision d's parameter counts.

    p_dk is ∂E[params]/∂prob_dk at uniform probabilities (expected params are multilinear in the
    per-decision probabilities, so this is option k's exact parameter contribution at decision d,
    averaged over the other decisions). A decision whose options hold no parameters gets zeros.
    """
    probs = [torch.full((int(n),), 1.0 / int(n), dtype=torch.float64, requires_grad=True) for n in num_options]
    grads = torch.autograd.grad(predictor.expected_params(probs), probs, allow_unused=True)
    out = []
    for g, n in zip(grads, num_options):
        g = torch.zeros(int(n), dtype=torch.float64) if g is None else g.detach().clamp(min=0.0)
        total = float(g.sum())
        out.append((g / total if total > 0 else g).float())
    return out


def complexity(abar: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """R(Ā) = Σ_d Σ_k w_dk·Ā_dk² (Sec. 3.3, Eq. 11), a 0-d tensor."""
    return sum(((w.to(b.dtype) * b * b).sum() for b, w in zip(abar, weights)), torch.zeros(()))


@dataclass(frozen=True)
class NaspConfig:
    """NASP settings.

    Attributes:
        arch_lr: Adam learning rate of A; None (default): ``max(PAPER_ARCH_LR, BOX_TRAVEL / arch steps)``,
            so each entry can cross the box in a short run.
        arch_betas: Adam betas of A (the authors' code: DARTS's (0.5, 0.999)).
        arch_weight_decay: Weight decay of A (DARTS's 1e-3).
        weight_decay: Weight decay of the supernet weights (DARTS's 3e-4).
        warmup_epochs: Epochs of weight steps before A moves.
        params_eta: η of the model-complexity regularizer (Sec. 3.3, Eq. 12); 0 turns it off, as in the
            paper's main experiments (Sec. 4.3: "In above experiments, we have set [η = 0] for (12)"; Fig. 2
            then varies it on Tiny-ImageNet).
        latency_loss: ``target`` (default), ``tfnas`` or ``none``.
        latency_lambda: λ of ``tfnas``.
        latency_dual: λ0, η, gain and margin of ``target`` (margin also: ``tfnas``).
    """

    arch_lr: float | None = None
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    weight_decay: float = 3e-4
    warmup_epochs: int = 0
    params_eta: float = 0.0
    latency_loss: str = "target"
    latency_lambda: float = 0.1
    latency_dual: DualAscentConfig = field(default_factory=DualAscentConfig)

    def __post_init__(self) -> None:
        checks = [
            (self.arch_lr is None or self.arch_lr > 0, f"--nasp-arch-lr must be positive, got {self.arch_lr}."),
            (all(0 <= b < 1 for b in self.arch_betas), f"--nasp-arch-betas must be in [0, 1), got {self.arch_betas}."),
            (self.arch_weight_decay >= 0 and self.weight_decay >= 0,
             "--nasp-arch-weight-decay and --nasp-weight-decay must be >= 0."),
            (self.warmup_epochs >= 0, f"--nasp-warmup-epochs must be >= 0, got {self.warmup_epochs}."),
            (self.params_eta >= 0, f"--nasp-params-eta must be >= 0, got {self.params_eta}."),
            (self.latency_loss in LATENCY_LOSSES,
             f"--nasp-latency-loss must be one of {', '.join(LATENCY_LOSSES)}, got {self.latency_loss!r}."),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["arch_betas"] = list(self.arch_betas)
        return out


@register_strategy("nasp")
class Nasp(Strategy):
    """NASP with hardware terms; see the module docstring."""

    def __init__(self, *, config: NaspConfig) -> None:
        self.config = config

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        c = NaspConfig()
        add_optimizer_flags(p, prefix="--nasp", label="NASP", what="A",
                            arch_lr_help=f"default: max({PAPER_ARCH_LR:g}, {BOX_TRAVEL:g}/architecture steps)",
                            arch_betas=c.arch_betas, arch_weight_decay=c.arch_weight_decay,
                            weight_decay=c.weight_decay, warmup_epochs=c.warmup_epochs)
        p.add_argument("--nasp-params-eta", type=float, default=c.params_eta,
                       help="NASP: eta of the model-size regularizer sum_k (p_k/p)*|A_k|^2 (Sec. 3.3; 0 = off, the paper's "
                            "main experiments, Sec. 4.3)")
        p.add_argument("--nasp-latency-loss", choices=LATENCY_LOSSES, default=c.latency_loss,
                       help="NASP: latency term at the discrete architecture: target (default; lambda by dual "
                            "ascent), tfnas or none")
        p.add_argument("--nasp-latency-lambda", type=float, default=c.latency_lambda, help="NASP: lambda of tfnas")
        DualAscentConfig.add_arguments(p, prefix="--nasp-latency")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Nasp":
        strategy = cls(config=NaspConfig(
            arch_lr=args.nasp_arch_lr, arch_betas=tuple(args.nasp_arch_betas),
            arch_weight_decay=args.nasp_arch_weight_decay, weight_decay=args.nasp_weight_decay,
            warmup_epochs=args.nasp_warmup_epochs, params_eta=args.nasp_params_eta,
            latency_loss=args.nasp_latency_loss, latency_lambda=args.nasp_latency_lambda,
            latency_dual=DualAscentConfig.from_args(args, prefix="--nasp-latency")))
        refuse_path_training_flags(args, strategy="nasp", warmup_flag="--nasp-warmup-epochs")
        return strategy

    def settings(self) -> dict[str, Any]:
        return self.config.to_json()

    def search(self, ctx: SearchContext) -> SearchResult:
        cfg = self.config
        supernet, ds, predictor, tc = ctx.supernet, ctx.dataset, ctx.predictor, ctx.train_config
        arch = BoxArchParams(ctx.space.num_options, seed=ctx.seed)
        steps = arch_step_count(ds, epochs=tc.epochs, warmup_epochs=cfg.warmup_epochs, batch_size=tc.batch_size)
        a_lr = cfg.arch_lr if cfg.arch_lr is not None else max(PAPER_ARCH_LR, BOX_TRAVEL / max(1, steps))
        loop = AlternatingConfig(epochs=tc.epochs, batch_size=tc.batch_size, w_lr=tc.lr, w_momentum=0.9,
                                 w_nesterov=False, w_weight_decay=cfg.weight_decay, a_lr=a_lr, a_betas=cfg.arch_betas,
                                 a_weight_decay=cfg.arch_weight_decay, warmup_epochs=cfg.warmup_epochs,
                                 checkpoint_every=tc.checkpoint_every)
        term = (BudgetTerm(form=cfg.latency_loss, budget=ctx.constraints.latency_ms, config=cfg.latency_dual,
                           fixed_lambda=cfg.latency_lambda, state=((ctx.state or {}).get("strategy") or {}).get("term"))
                if cfg.latency_loss in TARGET_FORMS else None)
        reg_w = params_weights(predictor, ctx.space.num_options) if cfg.params_eta > 0 else None

        def weight_step(x, y, rng, step):  # Algorithm 1, step 6: the selected ops only
            abar = [b.detach() for b in arch.discrete()]
            logits = supernet.weighted_forward(x, abar, compute=selected(abar))
            loss = classification_loss(logits, y)
            loss.backward()
            return {"loss": float(loss.detach()), "acc": float((logits.detach().argmax(1) == y).float().mean())}

        def arch_step(x, y, rng, step):  # steps 3-4: the gradient at Ā, applied to A
            abar = arch.discrete()
            logits = supernet.weighted_forward(x, abar, compute=selected(abar))
            ce = classification_loss(logits, y)
            latency = predictor.expected_latency(abar)  # ms: the selected architecture's (Ā is one-hot)
            loss = term.loss(ce, latency) if term is not None else ce
            if reg_w is not None:
                loss = loss + cfg.params_eta * complexity(abar, reg_w)
            grads = torch.autograd.grad(loss, abar, allow_unused=True)  # None: a dead cell edge
            for a, g in zip(arch.alphas, grads):
                a.grad = torch.zeros_like(a) if g is None else g.to(a.dtype)
            out = {"loss": float(loss.detach()), "ce": float(ce.detach()), "latency_ms": float(latency.detach())}
            return out if term is None else {**out, "lambda": term.lam, "coefficient": term.coefficient}

        def after_arch_step(step: int) -> None:
            arch.clip()
            if term is not None:
                derived = arch.derive()
                term.update(float(ctx.costs.latency(derived[None])[0]), derived)

        def on_epoch(epoch: int) -> dict[str, Any]:
            derived = arch.derive()
            return {"derived_latency_ms": float(ctx.costs.latency(derived[None])[0]),
                    **({} if term is None else {"lambda": term.lam})}

        alternate(supernet=supernet, arch=arch, ds=ds, config=loop, seed=ctx.seed, run=ctx.run, phase=PHASE,
                  weight_step=weight_step, arch_step=arch_step, state=ctx.state, on_epoch=on_epoch,
                  extra_state=lambda: {} if term is None else {"strategy": {"term": term.state()}},
                  after_arch_step=after_arch_step)
        return self._result(ctx, arch, term=term, arch_lr=a_lr)

    def _result(self, ctx: SearchContext, arch: BoxArchParams, *, term: BudgetTerm | None,
                arch_lr: float) -> SearchResult:
        """The final Ā (or, with ``target``, the visited one nearest under T), plus each epoch's Ā, scored."""
        history = [h for h in ctx.run.history() if h.get("phase") == PHASE]
        space = ctx.space
        heatmap = ctx.heatmap(history, title=f"NASP on {space.name}: A per epoch (box [0, 1])")
        final = arch.derive()
        derived = final if term is None else term.end_point(final, float(ctx.costs.latency(final[None])[0]))
        per_epoch = [np.asarray(h["derived"], dtype=np.int64) for h in history]
        candidates = ctx.evaluate([derived, final] + per_epoch)
        extra = {"derived": [int(v) for v in derived], "derived_feasible": bool(ctx.feasible(derived[None])[0]),
                 "final_A": arch.snapshot(), "heatmap": heatmap, "latency_loss": self.config.latency_loss,
                 "lambda": None if term is None else term.lam, "arch_lr": arch_lr}
        return SearchResult(best=derived, score=candidates[0]["accuracy"], candidates=candidates, extra=extra)
