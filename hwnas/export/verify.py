"""Verification of exported models: ONNX Runtime output against PyTorch, and accuracy of an
ONNX model on a dataset split.

A parity check with freshly initialized batch norms proves little: running mean 0, variance 1,
scale 1 and shift 0 make every BatchNorm (nearly) the identity, so an exporter or a runtime that
folds BN into the convolution wrongly would still pass. ``randomize_batchnorm`` therefore draws
non-trivial statistics and affine parameters before an export without trained weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from hwnas.profile import ort_session
from hwnas.train import Dataset, Split, batches

#: Default tolerance of the fp32 parity check (max |ONNX Runtime - PyTorch| over all logits).
ATOL = 1e-4


class VerificationError(RuntimeError):
    """An exported model does not reproduce PyTorch's outputs (the CLI exits 1)."""


@dataclass(frozen=True)
class Parity:
    """Result of ``check_parity``.

    Attributes:
        max_abs_diff: Largest |ONNX Runtime - PyTorch| over every output value compared.
        atol: Tolerance it is held to.
        inputs: Number of random inputs compared.
        batch_sizes: Batch sizes the model was run at.
        output_scale: Largest |PyTorch output| (to judge the diff against).
    """

    max_abs_diff: float
    atol: float
    inputs: int
    batch_sizes: tuple[int, ...]
    output_scale: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.atol


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, *, seed: int = 0) -> int:
    """Gives every BatchNorm non-trivial running statistics and affine parameters, in place.

    running_mean ~ N(0, 0.5²), running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.2²),
    ranges that keep activations O(1) through deep networks. The final linear layer is rescaled to
    N(0, 1/fan_in) so logits are O(1) too (the default N(0, 0.01²) would make an absolute
    tolerance meaningless).

    Returns:
        The number of BatchNorm layers changed.
    """
    g = torch.Generator().manual_seed(seed)
    count = 0
    last_linear: nn.Linear | None = None
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            if m.affine:
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
            count += 1
        elif isinstance(m, nn.Linear):
            last_linear = m
    if last_linear is not None:
        last_linear.weight.copy_(torch.randn(last_linear.weight.shape, generator=g) / last_linear.in_features ** 0.5)
    return count


def _run(session, x: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return session.run(None, {name: x})[0]


@torch.no_grad()
def check_parity(model: nn.Module, path: str | os.PathLike, *, input_shape: Sequence[int], dynamic_batch: bool,
                 num_inputs: int = 8, seed: int = 0, atol: float = ATOL, threads: int = 1) -> Parity:
    """Compares an ONNX / ORT-format model with the PyTorch ``model`` on random N(0, 1) inputs.

    A fixed-batch model is run at its batch size on ``num_inputs`` inputs; a dynamic-batch model
    on one batch of ``num_inputs`` and on each input alone (batch 1). ONNX Runtime runs with all
    graph optimizations on (BatchNorm folding, fusions), as a deployment would.

    Args:
        model: The PyTorch network the file was exported from.
        path: ``.onnx`` or ``.ort`` file.
        input_shape: C, H, W of one input.
        dynamic_batch: Whether the batch dimension is symbolic (else it is 1).
        num_inputs: Random inputs to compare.
        seed: Seed of the inputs.
        atol: Tolerance recorded in the result (``Parity.passed``).
        threads: ONNX Runtime intra-op threads.
    """
    was_training = model.training
    model.eval()
    session = ort_session(path, threads=threads)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_inputs, *input_shape), dtype=np.float32)  # N, C, H, W
    ref = model(torch.from_numpy(x)).numpy()
    runs: list[tuple[np.ndarray, np.ndarray]] = []
    sizes: list[int] = []
    if dynamic_batch:
        runs.append((_run(session, x), ref))
        sizes.append(num_inputs)
    for i in range(num_inputs):
        runs.append((_run(session, x[i:i + 1]), ref[i:i + 1]))
    sizes.append(1)
    model.train(was_training)
    diff = max(float(np.max(np.abs(out.astype(np.float64) - r))) for out, r in runs)
    return Parity(max_abs_diff=diff, atol=atol, inputs=num_inputs, batch_sizes=tuple(sizes),
                  output_scale=float(np.max(np.abs(ref))))


def require_parity(parity: Parity, *, path: str | os.PathLike) -> None:
    """Raises ``VerificationError`` saying by how much ``path`` missed the tolerance."""
    if not parity.passed:
        raise VerificationError(
            f"{Path(path).name} differs from PyTorch by max |diff| {parity.max_abs_diff:.3g}, "
            f"{parity.max_abs_diff - parity.atol:.3g} above the tolerance {parity.atol:g} "
            f"({parity.max_abs_diff / parity.atol:.1f}x; outputs up to {parity.output_scale:.3g}).")


def onnx_predictions(path: str | os.PathLike, split: Split, ds: Dataset, *, resolution: int, batch: int | None,
                     threads: int = 1) -> np.ndarray:
    """Top-1 predictions (N,) of an ONNX / ORT model over a split, preprocessed exactly as training.

    Args:
        batch: The model's fixed batch size, or None for a dynamic batch (then 256 per run).
    """
    session = ort_session(path, threads=threads)
    preds: list[np.ndarray] = []
    for x, _ in batches(split, ds, batch_size=256, resolution=resolution, shuffle=False):
        xn = x.contiguous().numpy()  # N, 3, R, R
        if batch is None:
            preds.append(_run(session, xn).argmax(1))
            continue
        for i in range(0, xn.shape[0], batch):  # the model's fixed batch; the last one zero-padded
            chunk = xn[i:i + batch]
            n = chunk.shape[0]
            if n < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
            preds.append(_run(session, chunk)[:n].argmax(1))
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


@torch.no_grad()
def torch_predictions(model: nn.Module, split: Split, ds: Dataset, *, resolution: int) -> np.ndarray:
    """Top-1 predictions (N,) of a PyTorch model (eval mode) over a split."""
    was_training = model.training
    model.eval()
    preds = [model(x).argmax(1).numpy() for x, _ in batches(split, ds, batch_size=256, resolution=resolution,
                                                             shuffle=False)]
    model.train(was_training)
    return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def accuracy(preds: np.ndarray, labels: torch.Tensor) -> float:
    """Top-1 accuracy (fraction) of predictions against labels."""
    y = labels.numpy()
    return float((preds == y).mean()) if y.size else 0.0
