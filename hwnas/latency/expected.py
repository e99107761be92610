"""Differentiable expected cost of an architecture distribution with independent decisions.

Gradient strategies (ProxylessNAS, MSG-DAS, ...) hold one probability vector per decision. With the
network decomposed into slots, each determined by a few decisions (``SearchSpace.slots``), the
expected latency is exact:

    E[LAT] = c + Σ_slots Σ_combos Π_k p_{d_k}(combo_k) · LAT_slot[combo]

which for spaces whose every layer depends on one decision reduces to ProxylessNAS's
``E[LAT] = Σ_layers Σ_ops p(op) · lat(op)`` (Cai et al., ICLR 2019, Sec. 3.3, Eq. 6). Each term is a
multilinear contraction (``torch.einsum``), so autograd gives exact gradients
∂E/∂p_d(o) = Σ over the terms containing d of the contraction with p_d removed.
"""

from __future__ import annotations

import string
from typing import Sequence

import numpy as np
import torch

from hwnas.errors import InputError

#: A term: the decisions it depends on, and its cost per combination of their option indices
#: (an array of shape ``(num_options[d] for d in decisions)``).
Term = tuple[tuple[int, ...], np.ndarray]


def check_probs(probs: Sequence[torch.Tensor], num_options: Sequence[int]) -> None:
    """Refuses a probability list of the wrong length or shapes (``InputError``)."""
    if len(probs) != len(num_options):
        raise InputError(f"expected one probability vector per decision ({len(num_options)}), got {len(probs)}.")
    for d, (p, n) in enumerate(zip(probs, num_options)):
        if not isinstance(p, torch.Tensor) or tuple(p.shape) != (n,):
            shape = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise InputError(f"probs[{d}] must be a tensor of shape ({n},), got {shape}.")


def expected_cost(terms: Sequence[Term], probs: Sequence[torch.Tensor], *, const: float = 0.0,
                  num_options: Sequence[int] | None = None,
                  cache: dict | None = None) -> torch.Tensor:
    """``const + Σ_terms einsum(cost, p_{d_1}, ..., p_{d_k})``: a scalar tensor, differentiable in ``probs``.

    Args:
        terms: ``[(decisions, cost array)]``; decisions are distinct indices into ``probs``.
        probs: ``probs[d]``: shape (num_options[d],), the distribution over decision d's options
            (not renormalized here: the result is multilinear in the given vectors).
        const: Cost of the parts no decision affects.
        num_options: When given, shapes are checked first.
        cache: Optional dict to keep the cost tensors per (dtype, device) between calls.

    Returns:
        The expected cost, a 0-d tensor of ``probs[0]``'s dtype and device.
    """
    if num_options is not None:
        check_probs(probs, num_options)
    ref = probs[0] if probs else torch.zeros(())
    key = (ref.dtype, ref.device)
    tensors = cache.get(key) if cache is not None else None
    if tensors is None:
        tensors = [torch.as_tensor(np.asarray(arr), dtype=ref.dtype, device=ref.device) for _, arr in terms]
        if cache is not None:
            cache[key] = tensors
    total = torch.as_tensor(const, dtype=ref.dtype, device=ref.device)
    for (decisions, _), t in zip(terms, tensors):
        if not decisions:
            total = total + t.sum()
            continue
        letters = string.ascii_letters[: len(decisions)]
        spec = f"{letters}," + ",".join(letters) + "->"
        total = total + torch.einsum(spec, t, *(probs[d] for d in decisions))
    return total


def expected_latency(predictor, probs: Sequence[torch.Tensor]) -> torch.Tensor:
    """E[LAT] in ms of a ``BatchPredictor``'s space under independent per-decision distributions.

    Args:
        predictor: A ``hwnas.latency.batch.BatchPredictor``.
        probs: ``probs[d]``: shape (num_options[d],), summing to 1.
    """
    return predictor.expected_latency(probs)
