"""Differentiable search scaffolding shared by gradient strategies (ProxylessNAS, MSG-DAS, GDAS, DARTS).

Architecture parameters α are one logit vector per decision of the space (so strategies stay at the
level of decisions). ``alternate`` runs the bi-level loop of DARTS (Liu et al. 2019, Alg. 1) in its
first-order form: a weight step on a ``train`` batch (SGD, cosine schedule), then an architecture
step on an ``arch`` batch (Adam), each defined by the strategy as a callback that computes and
back-propagates its loss. It records α's probabilities per epoch in the history, checkpoints
atomically and resumes: data order, sampling generators and dropout masks are functions of
(seed, step), so a resumed search repeats an uninterrupted one.

Data-parallel (``torchrun``; ``run.dist``): every process takes its share of each global batch of
both splits, draws the same paths and samples from the step's generator, and averages the
gradients of the weights after the weight step and those of α after the architecture step
(``hwnas.train.distributed``), so α and the weights stay identical on every process; the history's
metrics are averaged over processes (those of the global batch).
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hwnas.errors import InputError
from hwnas.supernet import SuperNet, step_rng
from hwnas.train import Dataset, RunDir, batches, cosine_lr, make_sgd, num_batches, set_lr


class ArchParams(nn.Module):
    """α: one logit vector per decision, initialized to zero (all options equally likely)."""

    def __init__(self, num_options: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        self.alphas = nn.ParameterList([nn.Parameter(torch.zeros(int(n))) for n in num_options])

    def probs(self, *, temperature: float = 1.0) -> list[torch.Tensor]:
        """softmax(α / temperature) per decision (differentiable)."""
        return [torch.softmax(a / temperature, dim=0) for a in self.alphas]

    def derive(self) -> np.ndarray:
        """The derived architecture: argmax α per decision (option indices)."""
        return np.array([int(torch.argmax(a.detach())) for a in self.alphas], dtype=np.int64)

    def snapshot(self) -> list[list[float]]:
        """Current probabilities as plain lists (for the history and the heatmap)."""
        with torch.no_grad():
            return [[round(float(v), 6) for v in p] for p in self.probs()]


@dataclass(frozen=True)
class AlternatingConfig:
    """Settings of the alternating weight / architecture optimization.

    Attributes:
        epochs: Passes over the weight-training split.
        batch_size: Examples per step (both splits).
        w_lr: Peak SGD learning rate of the weights (cosine decay to 0).
        w_momentum: SGD momentum.
        w_weight_decay: Weight decay of the weights.
        w_nesterov: Nesterov momentum for the weights (ProxylessNAS' reference code) or plain momentum
            (DARTS, MSG-DAS Sec. 4.2).
        a_lr: Adam learning rate of α.
        a_betas: Adam betas of α.
        a_weight_decay: Weight decay of α.
        warmup_epochs: Epochs of weight steps only before α starts to move.
        checkpoint_every: Steps between checkpoints (and one at every epoch end).
    """

    epochs: int = 5
    batch_size: int = 64
    w_lr: float = 0.05
    w_momentum: float = 0.9
    w_weight_decay: float = 4e-5
    w_nesterov: bool = True
    a_lr: float = 1e-3
    a_betas: tuple[float, float] = (0.0, 0.999)
    a_weight_decay: float = 0.0
    warmup_epochs: int = 0
    checkpoint_every: int = 50

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


#: Logits each α may travel over a whole run at the automatic learning rate (``auto_arch_lr``).
ARCH_TRAVEL = 3.0


def auto_arch_lr(paper_lr: float, *, arch_steps: int) -> float:
    """The architecture learning rate of a run: ``max(paper_lr, ARCH_TRAVEL / arch_steps)``.

    Adam moves each logit by about its learning rate per step whatever the gradient's scale (Kingma
    & Ba, ICLR 2015, Sec. 2.1: the effective step is bounded by ≈ lr). The papers' rates were set for
    ImageNet searches of 10^4–10^5 architecture steps (ProxylessNAS 1e-3; MSG-DAS 3e-4), where α
    can travel tens of logits. A CPU-sized run of a few dozen steps at those rates leaves α at its
    uniform start (measured, ``benchmarks/budget_hit.py``: softmax(α) moved < 0.002 in 36 steps), so
    neither the accuracy nor the latency term can decide anything. The automatic rate lets α travel
    ``ARCH_TRAVEL`` logits (e^3 ≈ 20× odds between two options) over the run, and is never below
    the paper's.

    Example: ``auto_arch_lr(1e-3, arch_steps=36)`` = 3 / 36 ≈ 0.0833; with 10^5 steps it is 1e-3.
    """
    return max(float(paper_lr), ARCH_TRAVEL / max(1, int(arch_steps)))


def arch_step_count(ds: Dataset, *, epochs: int, warmup_epochs: int, batch_size: int) -> int:
    """Architecture steps of ``alternate``: one per weight step after the warm-up epochs."""
    return num_batches(ds.train, batch_size=batch_size, drop_last=True) * max(0, epochs - warmup_epochs)


def add_optimizer_flags(p: argparse.ArgumentParser, *, prefix: str, label: str, what: str, arch_lr_help: str,
                        arch_betas: tuple[float, float], arch_weight_decay: float, weight_decay: float,
                        warmup_epochs: int) -> None:
    """The optimizer flags every gradient strategy has: ``PREFIX-arch-lr``, ``-arch-betas``,
    ``-arch-weight-decay`` (Adam on the architecture parameters ``what``), ``-weight-decay`` (SGD on
    the supernet weights) and ``-warmup-epochs``, with help lines starting ``LABEL:``."""
    p.add_argument(f"{prefix}-arch-lr", type=float, default=None, help=f"{label}: Adam learning rate of {what} "
                   f"({arch_lr_help})")
    p.add_argument(f"{prefix}-arch-betas", type=float, nargs=2, default=list(arch_betas), metavar=("B1", "B2"),
                   help=f"{label}: Adam betas of {what}")
    p.add_argument(f"{prefix}-arch-weight-decay", type=float, default=arch_weight_decay,
                   help=f"{label}: weight decay of {what}")
    p.add_argument(f"{prefix}-weight-decay", type=float, default=weight_decay,
                   help=f"{label}: weight decay of the supernet weights (replaces --weight-decay)")
    p.add_argument(f"{prefix}-warmup-epochs", type=int, default=warmup_epochs,
                   help=f"{label}: epochs of weight steps before {what} moves")


#: Supernet-training flags that only ``train_supernet`` applies (SPOS, FairNAS, random, MnasNet's
#: shared weights), with the value that means "off".
_UNIFORM_PATH_ONLY = {"shared_epochs": ("--shared-epochs", 0.0), "sandwich": ("--sandwich", False),
                      "warmup_epochs": ("--warmup-epochs", 0.0), "candidate_init": ("--candidate-init", "independent")}


def refuse_path_training_flags(args: Any, *, strategy: str, warmup_flag: str) -> None:
    """Raises ``InputError`` when a flag of uniform-path supernet training is set for a DNAS strategy.

    ProxylessNAS and MSG-DAS train their weights in ``alternate`` with their own paths and warm-up
    (``warmup_flag``); the shared-then-split phase, the sandwich rule, the learning-rate warm-up and
    aligned candidates belong to ``train_supernet`` and would silently do nothing here.
    """
    for field, (flag, off) in _UNIFORM_PATH_ONLY.items():
        value = getattr(args, field, None)
        if value is not None and value != off:
            raise InputError(f"{flag} applies to uniform-path supernet training (spos-evolution, random, mnasnet), "
                             f"not to --strategy {strategy}, which trains its weights with its own paths; "
                             f"use {warmup_flag} for its weight-only warm-up.")


#: A step callback: (images N,3,R,R; labels N; generator; step) → metrics; it calls ``backward`` itself.
StepFn = Callable[[torch.Tensor, torch.Tensor, np.random.Generator, int], dict[str, float]]


@dataclass(frozen=True)
class TrainBatch:
    """The weight step's batch and learning rate, for architecture steps that unroll it (DARTS's
    second-order step, Liu et al. 2019, Eq. 6-8)."""

    x: torch.Tensor  # N, 3, R, R
    y: torch.Tensor  # N
    lr: float  # the SGD learning rate of this step (ξ of Eq. 6)


#: An architecture step that also sees the weight step's batch: (arch images, labels, train batch,
#: generator, step) → metrics.
UnrolledStepFn = Callable[[torch.Tensor, torch.Tensor, TrainBatch, np.random.Generator, int], dict[str, float]]


@dataclass(frozen=True)
class WeightPaths:
    """Paths a learned sampler proposes for a gradient strategy's weight steps (TNAS, Yan et al. 2021,
    Sec. 4.3, Eq. 12: the path whose weights a step trains is drawn from p_θ(α | z)).

    Attributes:
        propose: Step index → option indices (D,) of the path that step trains, or None for the
            strategy's own path; a pure function of the step and of the proposer's state.
        on_epoch: Called at each epoch end with the epoch (before the checkpoint); returns history
            fields (the proposer learns here).
        state: The proposer's state, saved in every checkpoint as ``strategy["proposal"]``.
    """

    propose: Callable[[int], np.ndarray | None]
    on_epoch: Callable[[int], dict[str, Any]]
    state: Callable[[], dict[str, Any]]


def alternate(*, supernet: SuperNet, arch: ArchParams, ds: Dataset, config: AlternatingConfig, seed: int,
              run: RunDir, phase: str, weight_step: StepFn, arch_step: StepFn | None = None,
              unrolled_arch_step: UnrolledStepFn | None = None,
              state: dict[str, Any] | None = None,
              extra_state: Callable[[], dict[str, Any]] = dict,
              on_epoch: Callable[[int], dict[str, Any]] | None = None,
              after_arch_step: Callable[[int], None] | None = None) -> None:
    """Alternates weight steps (``ds.train``) and architecture steps (``ds.arch``) for ``config.epochs``.

    Args:
        supernet: Shared weights (optimized by SGD).
        arch: α (optimized by Adam).
        ds: Dataset.
        config: Settings.
        seed: Run seed.
        run: Run directory.
        phase: Name in the history lines.
        weight_step: Computes the weight loss of a train batch and calls ``backward``.
        arch_step: Computes the architecture loss of an arch batch and calls ``backward`` (or sets
            the architecture parameters' ``grad``).
        unrolled_arch_step: Instead of ``arch_step``: also receives the train batch the weight
            step just used and its learning rate (``TrainBatch``), and must leave the weights as it
            found them.
        state: Checkpoint to resume from.
        extra_state: Strategy state stored with each checkpoint.
        on_epoch: Extra history fields at each epoch end (e.g. the derived arch's predicted latency).
        after_arch_step: Called with the step index right after each architecture optimizer step
            (e.g. ProxylessNAS's rescaling of the updated α, Cai et al. 2019, Sec. 3.2.1).

    The run's processes (``run.dist``) share the batches; ``config.batch_size`` is the global batch.
    """
    if (arch_step is None) == (unrolled_arch_step is None):
        raise ValueError("alternate needs exactly one of arch_step and unrolled_arch_step")
    res = supernet.resolution
    dist = run.dist
    if config.batch_size % dist.world_size:
        raise ValueError(f"batch size {config.batch_size} is not a multiple of the {dist.world_size} processes")
    device = next(supernet.parameters()).device
    per_epoch = num_batches(ds.train, batch_size=config.batch_size, drop_last=True)
    arch_batches = max(1, num_batches(ds.arch, batch_size=config.batch_size, drop_last=True))
    total = per_epoch * config.epochs
    w_opt = make_sgd(supernet.parameters(), lr=config.w_lr, momentum=config.w_momentum,
                     weight_decay=config.w_weight_decay, nesterov=config.w_nesterov)
    a_opt = torch.optim.Adam(arch.parameters(), lr=config.a_lr, betas=config.a_betas,
                             weight_decay=config.a_weight_decay)
    step = 0
    sums: dict[str, float] = {}
    if state is not None and "dnas" in state:
        supernet.load_state_dict(state["supernet"])
        arch.load_state_dict(state["arch"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        step, sums = int(state["dnas"]["step"]), dict(state["dnas"]["sums"])
    if step >= total:
        return

    def checkpoint() -> None:
        run.save_checkpoint({"phase": phase, "supernet": supernet.state_dict(), "arch": arch.state_dict(),
                             "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(),
                             "dnas": {"step": step, "sums": sums}, **extra_state()})

    supernet.train()
    bar = tqdm(total=total, initial=step, desc=phase, unit="step", leave=False, dynamic_ncols=True)
    bn = contextlib.ExitStack()
    bn.enter_context(dist.batch_norm(supernet))
    while step < total:
        epoch, start = divmod(step, per_epoch)
        arch_iter = None
        for x, y in batches(ds.train, ds, batch_size=config.batch_size, resolution=res, seed=seed, epoch=epoch,
                            start=start, drop_last=True, part=dist.part):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            rng = step_rng(seed, step, stream=1)
            torch.manual_seed(dist.seed(seed * 1_000_003 + step))
            lr = cosine_lr(config.w_lr, step, total)
            set_lr(w_opt, lr)
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            metrics = {f"w_{k}": v for k, v in weight_step(x, y, rng, step).items()}
            dist.average_gradients(supernet.parameters())
            w_opt.step()
            if epoch >= config.warmup_epochs:
                if arch_iter is None:  # arch batches of this epoch, aligned with the step index
                    a_start = (step % per_epoch) % arch_batches
                    arch_iter = batches(ds.arch, ds, batch_size=config.batch_size, resolution=res, seed=seed + 1,
                                        epoch=epoch, start=a_start, drop_last=True, part=dist.part)
                try:
                    xa, ya = next(arch_iter)
                except StopIteration:
                    arch_iter = batches(ds.arch, ds, batch_size=config.batch_size, resolution=res, seed=seed + 1,
                                        epoch=epoch + 10_000 * (step + 1), drop_last=True, part=dist.part)
                    xa, ya = next(arch_iter)
                xa, ya = xa.to(device, non_blocking=True), ya.to(device, non_blocking=True)
                w_opt.zero_grad(set_to_none=True)
                a_opt.zero_grad(set_to_none=True)
                out = (arch_step(xa, ya, rng, step) if arch_step is not None
                       else unrolled_arch_step(xa, ya, TrainBatch(x=x, y=y, lr=lr), rng, step))
                metrics.update({f"a_{k}": v for k, v in out.items()})
                dist.average_gradients(arch.parameters())
                a_opt.step()
                if after_arch_step is not None:
                    after_arch_step(step)
                w_opt.zero_grad(set_to_none=True)
            for k, v in zip(metrics, dist.mean_floats(list(metrics.values()))):  # over the global batch
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["_n"] = sums.get("_n", 0.0) + 1
            step += 1
            bar.update(1)
            run.crash_point(f"{phase}_step")
            if step % per_epoch == 0:
                n = max(1.0, sums.pop("_n", 1.0))
                record = {"phase": phase, "epoch": step // per_epoch, "step": step,
                          **{k: v / n for k, v in sums.items()}, "probs": arch.snapshot(),
                          "derived": arch.derive().tolist()}
                if on_epoch is not None:
                    record.update(on_epoch(step // per_epoch))
                run.append_history(record)
                sums = {}
                checkpoint()
            elif step % config.checkpoint_every == 0:
                checkpoint()
            if step >= total:
                break
    bn.close()
    bar.close()
