"""BatchNorm whose batch statistics span every process of a data-parallel run.

With N processes each holding B examples of a global batch of N·B, a plain ``BatchNorm2d`` in
training mode normalizes with the statistics of its own B examples, so the run is not the one
process would make with batch N·B. ``torch.nn.SyncBatchNorm`` fixes that on GPUs only (it refuses
CPU tensors, so it cannot serve gloo runs). ``CrossRankBatchNorm2d`` does it on any device and
backend: each process computes its per-channel mean and sum of squared deviations (M2), one
differentiable all-reduce of 2C + 1 float64 numbers sums them, and Chan et al.'s pairwise
combination (Chan, Golub & LeVeque, "Updating formulae and a pairwise algorithm for computing sample
variances", 1979) gives the global mean and biased variance. Its size does not grow with the number
of processes (``SyncBatchNorm`` all-gathers N·C statistics). The
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

    Each process computes its count n_r, mean m_r and M2_r = Σ (x − m_r)² (two passes, stable) and
    contributes n_r·m_r and M2_r + n_r·m_r² in float64; one all-reduce of these 2C + 1 numbers
    (whatever the number of processes) gives n = Σ n_r, m = Σ n_r·m_r / n and
    var = Σ (M2_r + n_r·m_r²) / n − m² (Chan et al. 1979's pairwise update, summed in float64 so the
    subtraction loses nothing a float32 variance would keep). Differentiable in ``x``; every
    process gets bit-identical results.
    """
    c = x.shape[1]
    n_local = x.numel() // c
    mean_local = x.mean(dim=(0, 2, 3))  # C
    m2_local = (x - mean_local.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3))  # C
    m, m2 = mean_local.double(), m2_local.double()
    count = torch.full((1,), float(n_local), dtype=torch.float64, device=x.device)
    sums = _SumAcrossRanks.apply(torch.cat([n_local * m, m2 + n_local * m.square(), count]))  # 2C + 1
    n = sums[-1].detach()
    mean = sums[:c] / n
    var = (sums[c:2 * c] / n - mean.square()).clamp_min(0.0)
    return mean.to(x.dtype), var.to(x.dtype), float(n)


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
