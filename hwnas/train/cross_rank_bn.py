"""BatchNorm whose batch statistics span every process of a data-parallel run.

With N processes each holding B examples of a global batch of N·B, a plain ``BatchNorm2d`` in
training mode normalizes with the statistics of its own B examples, so the run is not the one
process would make with batch N·B. ``torch.nn.SyncBatchNorm`` fixes that on GPUs only (it refuses
CPU tensors, so it cannot serve gloo runs). ``CrossRankBatchNorm2d`` does it on any device and
backend: each process computes its per-channel mean and sum of squared deviations (M2), one
differentiable all-reduce gathers them, and Chan et al.'s pairwise combination (Chan, Golub &
LeVeque, "Updating formulae and a pairwise algorithm for computing sample variances", 1979, Eq. 2.1)
gives the global mean and biased variance, numerically as stable as a two-pass variance. The
running statistics then move with the global mean and the unbiased global variance, as
``BatchNorm2d`` does with the whole batch. The gradient flows back through the all-reduce, so the
averaged weight gradients are those of the global batch.

Modules are switched by class only (``batch_norm_across_ranks``), inside the training loops and
for the duration of the loop: parameters, buffers and ``state_dict`` keys stay those of
``BatchNorm2d``, so checkpoints, extracted paths and exported models are unchanged. Outside a
multi-process group (or in eval mode) the module is exactly ``BatchNorm2d``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.distributed as tdist
from torch import nn


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward is the all-reduce of the incoming gradient: the gradient of
    Σ_ranks loss_r with respect to each rank's contribution."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102 - autograd's hook
        out = tensor.clone(memory_format=torch.contiguous_format)
        tdist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102 - autograd's hook
        out = grad.clone(memory_format=torch.contiguous_format)
        tdist.all_reduce(out)
        return out


def multi_process() -> bool:
    """Whether a process group of more than one process is running (torch.distributed's own state)."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-channel mean and biased variance of ``x`` (N, C, H, W) over every process, and the count.

    Each process contributes its count n_r, mean m_r and M2_r = Σ (x − m_r)²; with n = Σ n_r,
    m = Σ n_r·m_r / n and M2 = Σ [M2_r + n_r·(m_r − m)²] (Chan et al. 1979), var = M2 / n.
    Differentiable in ``x``; every process gets bit-identical results.
    """
    c = x.shape[1]
    n_local = x.numel() // c
    mean_local = x.mean(dim=(0, 2, 3))  # C
    m2_local = (x - mean_local.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3))  # C
    world, rank = tdist.get_world_size(), tdist.get_rank()
    count = torch.full((c,), float(n_local), dtype=x.dtype, device=x.device)
    mine = torch.stack([mean_local, m2_local, count])[None]  # 1, 3, C
    table = x.new_zeros(world, 3, c).index_copy(0, torch.tensor([rank], device=x.device), mine)
    table = _SumAcrossRanks.apply(table)  # world, 3, C: every rank's (mean, M2, count)
    counts = table[:, 2:3, 0]  # world, 1
    n = counts.sum()
    mean = (counts * table[:, 0]).sum(0) / n
    m2 = (table[:, 1] + counts * (table[:, 0] - mean).square()).sum(0)
    return mean, m2 / n, float(n.detach())


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` with batch statistics over every process (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N, C, H, W
        if not (self.training and multi_process()):
            return super().forward(x)
        mean, var, n = global_moments(x)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(mean.detach(), alpha=f)
                self.running_var.mul_(1 - f).add_(var.detach() * (n / max(n - 1.0, 1.0)), alpha=f)
        c = x.shape[1]
        y = (x - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


@contextlib.contextmanager
def batch_norm_across_ranks(*modules: nn.Module) -> Iterator[None]:
    """Within the block, every ``BatchNorm2d`` of ``modules`` normalizes over all processes.

    Switches the class of each plain ``BatchNorm2d`` to ``CrossRankBatchNorm2d`` and back on exit
    (nothing else changes: same parameters, buffers and ``state_dict``). A no-op for one process,
    which therefore runs exactly the plain module.
    """
    if not multi_process():
        yield
        return
    switched = list(dict.fromkeys(m for mod in modules for m in mod.modules() if type(m) is nn.BatchNorm2d))
    for m in switched:
        m.__class__ = CrossRankBatchNorm2d
    try:
        yield
    finally:
        for m in switched:
            m.__class__ = nn.BatchNorm2d
