"""Training and evaluation primitives shared by standalone training and every search strategy.

Loops stay small and resumable: the learning rate is a pure function of the step (``cosine_lr``),
batch order a pure function of (seed, epoch) (``hwnas.train.data.epoch_order``), so a run restored from
a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.train.data import Dataset, Split, batches


@dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy (fraction) and mean cross-entropy on a split."""

    accuracy: float
    loss: float
    count: int


def cosine_lr(base_lr: float, step: int, total_steps: int, *, warmup_steps: int = 0, min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` of a linear warm-up then cosine decay to ``min_lr`` (Loshchilov & Hutter, 2017)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_sgd(params: Iterable[nn.Parameter], *, lr: float, momentum: float = 0.9, weight_decay: float = 4e-5,
             nesterov: bool = True) -> torch.optim.SGD:
    """SGD with momentum; weight decay is not applied to 1-D tensors (BN scales and biases)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of logits (N, classes) against labels (N,), optionally label-smoothed."""
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, ds: Dataset, *, resolution: int, batch_size: int = 256) -> EvalResult:
    """Top-1 accuracy and loss of ``model`` (eval mode) on a whole split (on the model's device)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct, loss_sum, n = 0, 0.0, 0
    for x, y in batches(split, ds, batch_size=batch_size, resolution=resolution, shuffle=False):
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        n += int(y.numel())
    model.train(was_training)
    return EvalResult(accuracy=correct / max(1, n), loss=loss_sum / max(1, n), count=n)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data: Iterator[tuple[torch.Tensor, torch.Tensor]], *, num_batches: int) -> None:
    """Re-estimates BatchNorm running statistics with forward passes (SPOS, Guo et al. 2020, Sec. 3.4).

    Statistics are reset and averaged cumulatively over ``num_batches`` training batches, so the
    result does not depend on the momentum or on the stale statistics of another path.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(bn.momentum, bn.training) for bn in bns]
    was_training = model.training
    model.train()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    for i, (x, _) in enumerate(data):
        if i >= num_batches:
            break
        model(x)
    for bn, (momentum, _) in zip(bns, saved):
        bn.momentum = momentum
    model.train(was_training)
