"""Budget-targeting latency terms of the gradient strategies, and the dual-ascent multiplier λ.

LightNAS (Luo et al., DAC 2022) treats the budget as an equality constraint ``LAT(α) = T`` and
optimizes its Lagrangian: the architecture step minimizes ``CE + λ · (E[LAT] / T − 1)`` in α
(E[LAT] the table's exact, differentiable expected latency), and λ follows by dual ascent,
``λ ← λ + η · (LAT(derived) / T − 1)``, with LAT(derived) the predicted latency of the current
argmax architecture, the one the search would return. Its published searches land within 0.7 % of
targets from 20 to 30 ms.

Choices made here (and why):

* λ may go negative. Over budget λ grows and pulls the latency down; under budget it shrinks,
  crosses zero and then pulls the latency UP, so the search also climbs towards T when it started
  (or fell) far below it, as LightNAS's unconstrained multiplier. A non-negative λ (the usual
  inequality-constraint dual) would stop at 0 and leave the search wherever the accuracy term puts
  it, often far under T.
* The term aims at ``T_eff = margin · T`` (``margin`` 0.975 by default): dual ascent oscillates
  around its target, and the derived architecture's latency moves in discrete jumps, so aiming
  2.5 % under T makes the end point land in [0.95, 1.00] · T rather than half the time just over.
* A proportional part (``gain`` ρ, the PI form of the Lagrangian update, Stooke et al., ICML 2020,
  "Responsive Safety in RL by PID Lagrangian Methods", Sec. 4): the loss's coefficient is
  ``λ + ρ · e``, e = LAT(derived) / T_eff − 1 the current error. Pure dual ascent (ρ = 0, LightNAS)
  is an integrator acting on α, which integrates again, so the derived latency swings around
  T_eff with an amplitude that does not decay; the proportional part flips the push as soon as the
  derived architecture crosses T_eff and damps the swing. ``--*-lambda-gain 0`` gives LightNAS's
  update exactly.
* The end point: in a short search α hardly moves from uniform, so one step can flip many near-tied
  decisions at once and the argmax architecture swings over and under T_eff in coarse jumps; where
  the last step lands is chance. The search therefore returns the final argmax architecture when it
  is within T and at least as close to T as every other argmax architecture it visited within T;
  otherwise the visited argmax architecture nearest under T (``BudgetTerm.end_point``; the latest
  one on ties). Every architecture it returns was the argmax of α at some architecture step.
* λ is strategy state: it goes into every checkpoint and is restored on resume, so a killed and
  resumed run takes the same steps; it is recorded per epoch in the history (``lambda``).

TF-NAS (Hu et al., ECCV 2020) uses ``CE + λ · |E[LAT] / T − 1|`` with a fixed λ (0.1); it is the
``tfnas`` form here, aimed at the same ``T_eff``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.search.objective import lightnas_loss, tfnas_loss

#: The latency forms that aim at the budget from both sides.
TARGET_FORMS = ("target", "tfnas")


@dataclass(frozen=True)
class DualAscentConfig:
    """Settings of the dual-ascent multiplier (LightNAS) and the aimed-at fraction of the budget.

    Attributes:
        lambda0: λ at the first architecture step (0: the accuracy term alone decides until the
            derived architecture's latency moves λ).
        lr: η, per architecture step: ``λ ← λ + η · (LAT(derived) / T_eff − 1)``.
        margin: ``T_eff = margin · T``, the latency the term aims at (0 < margin ≤ 1).
        gain: ρ ≥ 0, the proportional part: the loss uses ``λ + ρ · e`` (0: LightNAS's update).
    """

    lambda0: float = 0.0
    lr: float = 3.0
    margin: float = 0.975
    gain: float = 3.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.lambda0):
            raise InputError(f"the initial lambda (--proxyless-lambda0 / --msgdas-latency-lambda0) must be finite, "
                             f"got {self.lambda0!r}.")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise InputError(f"the lambda learning rate (--proxyless-lambda-lr / --msgdas-latency-lambda-lr) must be "
                             f">= 0, got {self.lr!r}.")
        if not (self.gain >= 0 and math.isfinite(self.gain)):
            raise InputError(f"the lambda gain (--proxyless-lambda-gain / --msgdas-latency-lambda-gain) must be "
                             f">= 0, got {self.gain!r}.")
        if not 0 < self.margin <= 1:
            raise InputError(f"the target margin (--proxyless-target-margin / --msgdas-latency-target-margin) must be "
                             f"in (0, 1], got {self.margin!r}.")

    @classmethod
    def add_arguments(cls, g: argparse._ArgumentGroup, *, prefix: str) -> None:
        """Adds ``PREFIX-lambda0``, ``PREFIX-lambda-lr`` and ``PREFIX-target-margin`` (e.g. ``--proxyless``)."""
        g.add_argument(f"{prefix}-lambda0", type=float, metavar="L", default=cls.lambda0,
                       help=f"target loss: initial dual-ascent lambda ({cls.lambda0:g})")
        g.add_argument(f"{prefix}-lambda-lr", type=float, metavar="ETA", default=cls.lr,
                       help=f"target loss: lambda += ETA*(LAT(argmax)/T_eff - 1) per arch step ({cls.lr:g}); "
                            f"lambda may go negative, so the search also climbs up to the budget")
        g.add_argument(f"{prefix}-lambda-gain", type=float, metavar="RHO", default=cls.gain,
                       help=f"target loss: the loss uses lambda + RHO*(LAT(argmax)/T_eff - 1), damping the swing "
                            f"around T ({cls.gain:g}; 0 = LightNAS's pure dual ascent)")
        g.add_argument(f"{prefix}-target-margin", type=float, metavar="M", default=cls.margin,
                       help=f"target and tfnas losses aim at T_eff = M*T, just under the budget ({cls.margin:g})")

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, prefix: str) -> "DualAscentConfig":
        """The settings from the flags ``add_arguments`` added with the same ``prefix``."""
        dest = prefix.lstrip("-").replace("-", "_")
        return cls(lambda0=getattr(args, f"{dest}_lambda0"), lr=getattr(args, f"{dest}_lambda_lr"),
                   margin=getattr(args, f"{dest}_target_margin"), gain=getattr(args, f"{dest}_lambda_gain"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class BudgetTerm:
    """The ``target`` (LightNAS) or ``tfnas`` latency term of one search, with its multiplier λ.

    Args:
        form: ``target`` (λ by dual ascent) or ``tfnas`` (fixed λ).
        budget: T, ms.
        config: Dual-ascent settings and margin.
        fixed_lambda: λ of the ``tfnas`` form.
        state: ``state()`` of a checkpoint to resume from, or ``None``.
    """

    def __init__(self, *, form: str, budget: float, config: DualAscentConfig, fixed_lambda: float,
                 state: dict[str, Any] | None) -> None:
        if form not in TARGET_FORMS:
            raise ValueError(f"form must be one of {TARGET_FORMS}, got {form!r}")
        self.form, self.config = form, config
        self.budget = float(budget)  # ms
        self.target = config.margin * self.budget  # T_eff, ms
        self.lam = float(config.lambda0 if form == "target" else fixed_lambda)
        self.error = 0.0  # e = LAT(derived) / T_eff − 1 at the last update
        self.updates = 0
        self.best_within: list[int] | None = None  # the visited argmax architecture nearest under T
        self.best_within_ms = -math.inf  # its predicted latency, ms
        if state:
            self.lam, self.updates = float(state["lambda"]), int(state["updates"])
            self.error, self.best_within = float(state["error"]), state.get("best_within")
            self.best_within_ms = float(state["best_within_ms"])

    @property
    def coefficient(self) -> float:
        """The multiplier the loss uses: ``λ + ρ · e`` (``target``) or the fixed λ (``tfnas``)."""
        return self.lam + self.config.gain * self.error if self.form == "target" else self.lam

    def loss(self, ce: torch.Tensor, expected_latency: torch.Tensor) -> torch.Tensor:
        """``ce`` plus the term at the current coefficient (E[LAT] in ms, a differentiable 0-d tensor)."""
        if self.form == "target":
            return lightnas_loss(ce, expected_latency, self.target, lam=self.coefficient)
        return tfnas_loss(ce, expected_latency, self.target, lam=self.lam)

    def update(self, derived_latency_ms: float, derived: Any = None) -> float:
        """Dual ascent ``λ ← λ + η · e`` on the derived (argmax) architecture's predicted latency;
        returns the new λ. ``tfnas`` keeps its fixed λ.

        Args:
            derived_latency_ms: Predicted latency of the current argmax architecture, ms.
            derived: Its option indices (kept as ``best_within`` when it is the nearest under T so
                far), or ``None``.
        """
        if derived is not None and self.best_within_ms <= derived_latency_ms <= self.budget:
            self.best_within, self.best_within_ms = [int(v) for v in derived], float(derived_latency_ms)
        if self.form == "target":
            self.error = float(derived_latency_ms) / self.target - 1.0
            self.lam += self.config.lr * self.error
            self.updates += 1
        return self.lam

    def state(self) -> dict[str, Any]:
        """λ, the last error, the number of updates and ``best_within`` (the strategy's checkpoint)."""
        return {"lambda": self.lam, "error": self.error, "updates": self.updates, "best_within": self.best_within,
                "best_within_ms": self.best_within_ms}

    def end_point(self, derived: np.ndarray, derived_latency_ms: float) -> np.ndarray:
        """The architecture to return: ``derived`` when within T and no visited argmax architecture
        was nearer under T, else the nearest such one (see the module docstring)."""
        if self.best_within is None or self.best_within_ms <= derived_latency_ms <= self.budget:
            return derived
        return np.asarray(self.best_within, dtype=np.int64)
