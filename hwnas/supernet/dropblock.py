"""DropBlock-identity for MSG-DAS (Tan et al. 2021, Sec. 3.2, Eq. 4-6) and its step-wise ratio schedule.

The skip (identity) candidates of a differentiable search pass gradients unattenuated and tend to
win (the "spread of skip-connect"). MSG-DAS multiplies the identity's output by a DropBlock mask
(Ghiasi et al. 2018, Alg. 1): ``y = g(α_id) · (x · m̃)`` (Eq. 4), so that the expected gradient of
``α_id`` is scaled by the keep probability (Eq. 6). The drop ratio is zero at the start of the
search and rises in steps (Sec. 3.2, last paragraph).

Following Eq. 4-6 literally, the kept activations are *not* rescaled by ``1 / keep``: the
attenuation is the point (original DropBlock rescales; that would leave the expected gradient
unchanged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.errors import InputError


def dropblock_mask(shape: torch.Size | tuple[int, ...], *, drop_prob: float, block_size: int,
                   generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A DropBlock keep-mask m̃ (1 = kept, 0 = dropped) of ``shape`` = (N, C, H, W) (Ghiasi et al. 2018, Alg. 1).

    Block corners are Bernoulli(γ) on the (H − b + 1) × (W − b + 1) positions where a whole b × b block
    fits, with ``γ = drop_prob / b² · HW / ((H − b + 1)(W − b + 1))`` (Eq. 1 there), so that about
    ``drop_prob`` of the positions are dropped; each corner zeroes the b × b block below and right of it.
    One mask per feature map (sample and channel). ``b = min(block_size, H, W)``.

    Args:
        shape: N, C, H, W.
        drop_prob: Target fraction of dropped activations, in [0, 1).
        block_size: Block side b, pixels.
        generator: Source of randomness (default: torch's global generator).
        dtype: Mask dtype.
    """
    n, c, h, w = shape
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if drop_prob == 0.0:
        return torch.ones(shape, dtype=dtype)
    b = min(block_size, h, w)
    valid_h, valid_w = h - b + 1, w - b + 1
    gamma = min(1.0, drop_prob / b**2 * (h * w) / (valid_h * valid_w))
    corners = (torch.rand((n, c, valid_h, valid_w), generator=generator) < gamma).to(dtype)  # N, C, H-b+1, W-b+1
    # position p is dropped when a corner lies in [p - b + 1, p] on both axes: max-pool of the padded corners
    padded = F.pad(corners, (b - 1, b - 1, b - 1, b - 1)) if b > 1 else corners  # zeros: no corner outside
    dropped = F.max_pool2d(padded, kernel_size=b, stride=1) if b > 1 else corners  # N, C, H, W
    return 1.0 - dropped


def drop_block(x: torch.Tensor, *, drop_prob: float, block_size: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``x · m̃`` with a fresh DropBlock mask (MSG-DAS Eq. 4, not rescaled); ``x`` when ``drop_prob`` is 0.

    Args:
        x: Feature map, N, C, H, W.
        drop_prob: Fraction of activations to drop, in [0, 1).
        block_size: Block side, pixels.
        generator: Source of randomness (default: torch's global generator).
    """
    if drop_prob == 0.0:
        return x
    mask = dropblock_mask(x.shape, drop_prob=drop_prob, block_size=block_size, generator=generator, dtype=x.dtype)
    return x * mask.to(x.device)


@dataclass(frozen=True)
class DropBlockSchedule:
    """Step-wise DropBlock ratio: 0 at the start, rising to ``max_ratio`` in ``steps`` equal increments.

    The search is cut into ``steps + 1`` equal phases; phase i (0-based) drops ``max_ratio · i / steps``
    (MSG-DAS Sec. 3.2: "set the DropBlock ratio to be zero initially ... and increase it in a step-wise
    manner"). The paper gives no values; the defaults are ours.

    Attributes:
        max_ratio: Ratio of the last phase, in [0, 1).
        steps: Number of increments (≥ 1).
        block_size: DropBlock block side, pixels (small: search feature maps are 1-16 pixels wide at 32 px).
    """

    max_ratio: float = 0.1
    steps: int = 4
    block_size: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_ratio < 1.0:
            raise InputError(f"--msgdas-dropblock-max must be in [0, 1), got {self.max_ratio}.")
        if self.steps < 1:
            raise InputError(f"--msgdas-dropblock-steps must be >= 1, got {self.steps}.")
        if self.block_size < 1:
            raise InputError(f"--msgdas-dropblock-size must be >= 1, got {self.block_size}.")

    def ratio(self, step: int, total: int) -> float:
        """Drop ratio at training ``step`` of ``total`` steps."""
        if total <= 0:
            return 0.0
        phase = min(self.steps, (max(0, step) * (self.steps + 1)) // total)
        return self.max_ratio * phase / self.steps

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
