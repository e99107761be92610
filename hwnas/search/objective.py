"""Objectives: hard constraints (sampling, evolution) and the soft forms of the papers.

* Hard: predicted latency ≤ T, FLOPs ≤ F, params ≤ P on every candidate (SPOS, Guo et al. 2020,
  Eq. 3-4: the evolutionary search only evaluates candidates that satisfy the constraints).
* MnasNet reward (Tan et al. 2019, Eq. 2): ``ACC(m) · (LAT(m) / T)^w`` with ``w = α`` if
  ``LAT ≤ T`` else ``β``; soft α = β = −0.07, hard α = 0, β = −1.
* ProxylessNAS latency losses (Cai et al. 2019, Sec. 3.3 and the reference implementation):
  multiplicative ``α · CE · (log E[LAT] / log T)^β`` (latencies in units of T / 80, see
  ``proxyless_mul_factor``) and additive ``CE + λ · E[LAT] / T``.
* Budget-targeting forms, which pull the latency TO the budget from either side: LightNAS (Luo et
  al., DAC 2022; its latency-constrained loss) ``CE + λ · (E[LAT] / T − 1)`` with λ learned by dual
  ascent (``hwnas.search.dual_ascent``); TF-NAS (Hu et al., ECCV 2020; its latency constraint)
  ``CE + λ · |E[LAT] / T − 1|`` with a fixed λ; TuNAS's absolute reward (Bender et al., CVPR 2020;
  its "absolute reward function") ``Q + β · |LAT / T − 1|``, β = −0.10 in its code, for RL
  controllers. (These three papers are not in ``shared/papers``; the forms are as the papers state them.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hwnas.errors import InputError


@dataclass(frozen=True)
class Constraints:
    """Upper bounds; ``None`` means unconstrained.

    Attributes:
        latency_ms: Predicted latency budget T, ms.
        flops_max: FLOPs (multiply-adds) bound.
        params_max: Parameter-count bound.
    """

    latency_ms: float | None = None
    flops_max: float | None = None
    params_max: float | None = None

    def __post_init__(self) -> None:
        for name, flag in (("latency_ms", "--latency-ms"), ("flops_max", "--flops-max"), ("params_max", "--params-max")):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise InputError(f"{flag}: must be a positive number, got {v!r}.")

    def feasible(self, *, latency: Any, flops: Any, params: Any) -> np.ndarray:
        """Element-wise: every bound holds (arrays or scalars in, bool array out)."""
        ok = np.ones(np.broadcast(np.asarray(latency), np.asarray(flops), np.asarray(params)).shape, dtype=bool)
        if self.latency_ms is not None:
            ok &= np.asarray(latency) <= self.latency_ms
        if self.flops_max is not None:
            ok &= np.asarray(flops) <= self.flops_max
        if self.params_max is not None:
            ok &= np.asarray(params) <= self.params_max
        return ok

    def to_json(self) -> dict[str, float | None]:
        return {"latency_ms": self.latency_ms, "flops_max": self.flops_max, "params_max": self.params_max}


#: MnasNet's two reward settings (Tan et al. 2019, Sec. 3): (α, β).
MNAS_REWARDS: dict[str, tuple[float, float]] = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0)}


def mnasnet_reward(acc: Any, lat: Any, target: float, *, alpha: float = -0.07, beta: float = -0.07) -> Any:
    """MnasNet's multi-objective reward ``ACC(m) · (LAT(m) / T)^w`` (Tan et al. 2019, Sec. 3, Eq. 2).

    ``w = α`` if ``LAT(m) ≤ T`` else ``β``. Soft setting α = β = −0.07: doubling the latency costs
    about 5% of the reward on either side of T (2^−0.07 ≈ 0.952). Hard setting α = 0, β = −1: the
    reward is the accuracy up to T and falls in proportion to T / LAT above it. With α = β the
    budget only rescales the reward (``ACC · (LAT/T)^α = T^−α · ACC · LAT^α``): the ranking of models,
    and so the search, does not depend on T; only α ≠ β makes it budget-dependent.

    Args:
        acc: Accuracy (fraction), scalar or array.
        lat: Latency, same unit as ``target``, > 0; scalar or array (broadcast with ``acc``).
        target: Target latency T, > 0.
        alpha: Exponent when ``lat <= target`` (soft: −0.07, hard: 0).
        beta: Exponent when ``lat > target`` (soft: −0.07, hard: −1).

    Returns:
        A float for scalar inputs, else an array of the broadcast shape.

    Raises:
        InputError: for a non-positive target or latency.
    """
    if not (target > 0 and math.isfinite(target)):
        raise InputError(f"latency target T must be a positive number, got {target!r}.")
    acc, lat = np.asarray(acc, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    if not np.all(lat > 0):
        raise InputError("latencies of the MnasNet reward must be positive.")
    w = np.where(lat <= target, alpha, beta)
    out = acc * np.power(lat / target, w)
    return float(out) if out.ndim == 0 else out


#: log of the unit change that makes the multiplicative loss scale-free: costs are measured in units
#: of T / 80, so that at the reference implementation's own setting (mobile budget T = 80 ms, costs
#: in ms) the loss is exactly the reference's ``mul#log`` regularizer.
MUL_LOG_SCALE = math.log(80.0)


def proxyless_mul_factor(expected: torch.Tensor, target: float, *, beta: float,
                         log_scale: float = MUL_LOG_SCALE) -> torch.Tensor:
    """The factor ``(log E / log T)^β`` of the multiplicative loss, with E and T in units of T / 80.

    The reference code (``mul#log``) takes ms and a mobile budget of 80 ms, where ``log T`` = 4.38. In
    fixed units the ratio's sensitivity to an overshoot, ``d ratio / d log(E/T) = 1 / log T``, depends
    on the absolute budget and the unit: at a 0.3 ms budget ``log T`` is negative in ms (the loss
    flips sign) and 5.7 in µs, at 30 ms it is 10.3 in µs, so the same 10 % overshoot would cost
    twice as much at one budget as at the other. Measuring costs in units of ``T / 80`` gives
    ``ratio = 1 + log(E / T) / log 80``: a function of E/T only (like the additive form's
    ``E / T``), identical to the reference at its own setting, and positive whenever E > T / 80.

    Note what the form does not do: it never pushes E[LAT] up towards T (the factor increases with
    E for every E), and in fixed units T enters only as the constant factor ``(log T)^−β`` of the
    whole loss, which Adam's per-parameter normalization cancels, so a search with the reference
    formula takes the same steps for every T. Here T sets where the accuracy / latency balance of
    the reference (at E = T = 80 ms) applies; reaching a given T is the job of β (or of the
    additive form, whose penalty grows as T shrinks).

    Args:
        expected: Expected cost E (latency ms, FLOPs or params), a 0-d tensor.
        target: The budget T in the same unit (> 0).
        beta: The exponent β.
        log_scale: ``log`` of the reference budget in its unit (default ``log 80``).
    """
    if not target > 0:
        raise InputError(f"the multiplicative loss needs a positive target, got {target!r}.")
    ratio = 1.0 + torch.log(expected / target) / log_scale
    return ratio.clamp_min(1e-6) ** beta


def proxyless_mul_loss(ce: torch.Tensor, expected_latency: torch.Tensor, target: float, *,
                       alpha: float = 0.2, beta: float = 0.3, log_scale: float = MUL_LOG_SCALE) -> torch.Tensor:
    """``α · CE · (log E[LAT] / log T)^β`` (ProxylessNAS, Cai et al. 2019, Sec. 3.3; reference code
    ``mul#log``; defaults α = 0.2, β = 0.3 from its ``imagenet_arch_search.py``).

    Latencies are in units of T / 80 (see ``proxyless_mul_factor``), which reproduces the reference
    at T = 80 ms and makes the loss depend on E[LAT] / T only.

    Args:
        ce: Cross-entropy of the architecture batch, 0-d tensor.
        expected_latency: E[LAT], ms, 0-d tensor (differentiable in the architecture parameters).
        target: Latency budget T, ms.
        alpha: Scale α.
        beta: Exponent β.
        log_scale: See ``proxyless_mul_factor``.
    """
    return alpha * ce * proxyless_mul_factor(expected_latency, target, beta=beta, log_scale=log_scale)


def proxyless_add_loss(ce: torch.Tensor, expected_latency: torch.Tensor, target: float, *,
                       lam: float = 0.1) -> torch.Tensor:
    """``CE + λ · E[LAT] / T`` (ProxylessNAS Sec. 3.3, Eq. 7 with the latency normalized by the budget;
    reference code ``add#linear``, default λ = 0.1; the reference's ``(E − T) / T`` differs by the
    constant λ only, so gradients are identical)."""
    if not target > 0:
        raise InputError(f"the additive loss needs a positive target, got {target!r}.")
    return ce + lam * expected_latency / target


#: TuNAS's default β of the absolute reward (Bender et al. 2020, its released code).
TUNAS_BETA = -0.10


def lightnas_loss(ce: torch.Tensor, expected_latency: torch.Tensor, target: float, *, lam: float) -> torch.Tensor:
    """``CE + λ · (E[LAT] / T − 1)`` (LightNAS, Luo et al., DAC 2022: the latency-constrained loss).

    λ is the Lagrange multiplier of the equality constraint ``LAT = T``, updated by dual ascent
    (``hwnas.search.dual_ascent.DualAscent``), so it may be negative: then the term pulls E[LAT] UP
    towards T, which is how the search lands just under the budget instead of far below it.

    Args:
        ce: Task loss, 0-d tensor.
        expected_latency: E[LAT], ms, 0-d tensor (differentiable in α).
        target: The latency the term aims at, ms (> 0).
        lam: The current multiplier λ (any sign).
    """
    if not target > 0:
        raise InputError(f"the budget-targeting loss needs a positive target, got {target!r}.")
    return ce + lam * (expected_latency / target - 1.0)


def tfnas_loss(ce: torch.Tensor, expected_latency: torch.Tensor, target: float, *, lam: float = 0.1) -> torch.Tensor:
    """``CE + λ · |E[LAT] / T − 1|`` (TF-NAS, Hu et al., ECCV 2020: its latency constraint; λ = 0.1).

    The gradient pushes E[LAT] down above T and up below it, with constant strength λ / T.
    """
    if not target > 0:
        raise InputError(f"the TF-NAS loss needs a positive target, got {target!r}.")
    return ce + lam * torch.abs(expected_latency / target - 1.0)


def tunas_reward(quality: Any, lat: Any, target: float, *, beta: float = TUNAS_BETA) -> Any:
    """TuNAS's absolute reward ``Q + β · |LAT / T − 1|`` (Bender et al., CVPR 2020: the "absolute reward function").

    Unlike MnasNet's soft reward (whose ranking does not depend on T, see ``mnasnet_reward``), it
    peaks at LAT = T and falls linearly on both sides: with β = −0.1 a model 10 % off the budget
    loses 0.01 of accuracy. Example: Q = 0.9, LAT = 1.1, T = 1.0 → 0.9 − 0.1 · 0.1 = 0.89.

    Args:
        quality: Accuracy Q (fraction), scalar or array.
        lat: Latency, same unit as ``target``; scalar or array (broadcast with ``quality``).
        target: Target latency T, > 0.
        beta: β ≤ 0 (−0.10 in TuNAS's code).

    Returns:
        A float for scalar inputs, else an array of the broadcast shape.
    """
    if not (target > 0 and math.isfinite(target)):
        raise InputError(f"latency target T must be a positive number, got {target!r}.")
    q, lat = np.asarray(quality, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    out = q + beta * np.abs(lat / target - 1.0)
    return float(out) if out.ndim == 0 else out
