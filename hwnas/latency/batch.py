"""Vectorized latency, FLOPs and parameters of many architectures at once (numpy, no model builds).

Every position of the network is a slot whose block depends on a few decisions
(``SearchSpace.layout``). For each slot one dense array holds the cost of every combination of its
decisions' options; an architecture's cost is the constant part plus the sum over slots of
``array[slot][indices[:, slot.decisions]]``. A cell edge's slot depends on every decision of its
cell, because whether it is live does (a dead edge costs nothing: ``CellSpace.layout``). The calibration (linear in
per-block features, ``hwnas.latency.calibration``) folds into the arrays: block ms ↦ a·ms + b, plus c.
The same arrays give the exact expected cost of independent per-decision distributions
(``hwnas.latency.expected``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.latency.expected import Term, check_probs, expected_cost
from hwnas.latency.model import LatencyModel
from hwnas.space import Block, op_key

if TYPE_CHECKING:
    from hwnas.space import SearchSpace


class BatchPredictor:
    """Costs of architectures of one space at fixed resolution / width / classes, from option indices.

    Build it with ``BatchPredictor.build``. Attributes: ``estimated`` (keys the table lacks, estimated
    by the regressor), ``num_options``, ``calibrated``.
    """

    @classmethod
    def build(cls, model: LatencyModel, space: "SearchSpace", *, resolution: int | None = None,
              width_mult: float = 1.0, num_classes: int | None = None, strict: bool = False) -> "BatchPredictor":
        """The vectorized predictor of ``space`` at these settings (numpy, no model builds).

        Raises:
            InputError: for a table at other settings (``LatencyTable.check_arch``), or (strict) keys
                the table lacks.
        """
        res = resolution or space.spec.resolution
        classes = num_classes or space.spec.num_classes
        model.table.check_arch({"resolution": res, "width_mult": width_mult, "num_classes": classes})
        return cls(space=space, model=model, resolution=res, width_mult=width_mult, num_classes=classes,
                   strict=strict)

    def __init__(self, *, space: "SearchSpace", model: LatencyModel, resolution: int, width_mult: float,
                 num_classes: int, strict: bool = False) -> None:
        self.space = space
        self.num_options = np.asarray(space.num_options, dtype=np.int64)
        self.calibrated = model.calibration is not None
        scale, per_block = model.calibration.per_block() if model.calibration else (1.0, 0.0)
        self._intercept = model.calibration.intercept_ms if model.calibration else 0.0
        # per slot: its decisions, blocks and dense block-index array (-1: nothing)
        self._layout = space.layout(resolution=resolution, width_mult=width_mult, num_classes=num_classes)
        blocks: dict[Block, None] = {}
        for t in self._layout:
            for b in t.blocks:
                if op_key(b) is not None:
                    blocks.setdefault(b, None)
        keys = list(dict.fromkeys(op_key(b) for b in blocks))
        ms, self.estimated = model.keys_ms(keys, strict=strict)
        key_ms = dict(zip(keys, ms))
        self._lut = self._arrays(lambda b: key_ms[op_key(b)])  # ms
        self._count = self._arrays(lambda b: 1.0)  # blocks with a key
        self._lat = [(d, scale * lut + per_block * cnt) for (d, lut), (_, cnt) in zip(self._lut, self._count)]
        self._flops: list[Term] | None = None
        self._params: list[Term] | None = None
        self._torch_cache: dict[str, dict] = {"lat": {}, "flops": {}, "params": {}}

    def _arrays(self, value) -> list[Term]:
        """One dense array per distinct decision tuple: Σ over its slots of ``value(block)`` (0 for none/skip)."""
        grouped: dict[tuple[int, ...], np.ndarray] = {}
        for t in self._layout:
            arr = grouped.setdefault(t.decisions, np.zeros(tuple(int(self.num_options[d]) for d in t.decisions)))
            vals = np.array([value(b) if op_key(b) is not None else 0.0 for b in t.blocks] + [0.0])
            arr += vals[t.index]  # index -1 → the trailing 0
        return list(grouped.items())

    # ---- vectorized evaluation ---------------------------------------------------------------

    def _check(self, indices: np.ndarray | Sequence) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim == 1:
            idx = idx[None, :]
        if idx.ndim != 2 or idx.shape[1] != self.num_options.size:
            raise InputError(f"indices must have shape (N, {self.num_options.size}) (option index per decision), "
                             f"got {tuple(np.shape(indices))}.")
        if not np.issubdtype(idx.dtype, np.integer):
            raise InputError(f"indices must be integers, got dtype {idx.dtype}.")
        if idx.size and ((idx < 0).any() or (idx >= self.num_options).any()):
            bad = int(np.argwhere((idx < 0) | (idx >= self.num_options))[0, 1])
            raise InputError(f"indices[:, {bad}] is out of range for decision "
                             f"{self.space.decisions[bad].name} ({self.num_options[bad]} options).")
        return idx

    @staticmethod
    def _gather(terms: Sequence[Term], idx: np.ndarray, const: float) -> np.ndarray:
        out = np.full(idx.shape[0], const, dtype=np.float64)
        for decisions, arr in terms:
            if not decisions:
                out += float(arr)
            elif len(decisions) == 1:
                out += arr.take(idx[:, decisions[0]])
            else:
                out += arr[tuple(idx[:, d] for d in decisions)]
        return out

    def latency(self, indices: np.ndarray) -> np.ndarray:
        """Predicted (calibrated) latency, ms: indices (N, num_decisions) from ``SearchSpace.encode`` → (N,)."""
        return self._gather(self._lat, self._check(indices), self._intercept)

    def lut_sum(self, indices: np.ndarray) -> np.ndarray:
        """Uncalibrated Σ of block latencies, ms, shape (N,)."""
        return self._gather(self._lut, self._check(indices), 0.0)

    def num_blocks(self, indices: np.ndarray) -> np.ndarray:
        """Blocks with a table key per architecture, shape (N,)."""
        return self._gather(self._count, self._check(indices), 0.0)

    def flops(self, indices: np.ndarray) -> np.ndarray:
        """FLOPs (fvcore multiply-adds) per architecture, shape (N,)."""
        return self._gather(self._cost_terms()[0], self._check(indices), 0.0)

    def params(self, indices: np.ndarray) -> np.ndarray:
        """Parameters per architecture, shape (N,)."""
        return self._gather(self._cost_terms()[1], self._check(indices), 0.0)

    def terms(self, kind: str) -> tuple[list[Term], float]:
        """The dense arrays behind a cost and its constant: ``kind`` is latency, flops or params.

        ``cost(x) = const + Σ_t array_t[x[decisions_t]]`` (e.g. for exact minimization, ``hwnas.space.bounds``).
        """
        if kind == "latency":
            return list(self._lat), float(self._intercept)
        flops, params = self._cost_terms()
        if kind == "flops":
            return list(flops), 0.0
        if kind == "params":
            return list(params), 0.0
        raise ValueError(f"kind must be latency, flops or params, got {kind!r}")

    def _cost_terms(self) -> tuple[list[Term], list[Term]]:
        if self._flops is None or self._params is None:
            from hwnas.space import CostCounter

            counter = CostCounter()
            self._flops = self._arrays(lambda b: float(counter.block(b).flops))
            self._params = self._arrays(lambda b: float(counter.block(b).params))
        return self._flops, self._params

    # ---- expectations (differentiable) -------------------------------------------------------

    def expected_latency(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """E[LAT] in ms under independent per-decision distributions, differentiable in ``probs``.

        Args:
            probs: ``probs[d]``: shape (num_options[d],), summing to 1.

        Returns:
            A 0-d tensor (``probs``' dtype and device); exact, see ``hwnas.latency.expected``.
        """
        return expected_cost(self._lat, probs, const=self._intercept, num_options=self.num_options.tolist(),
                             cache=self._torch_cache["lat"])

    def expected_flops(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """E[FLOPs] under independent per-decision distributions (differentiable)."""
        return expected_cost(self._cost_terms()[0], probs, num_options=self.num_options.tolist(),
                             cache=self._torch_cache["flops"])

    def expected_params(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """E[params] under independent per-decision distributions (differentiable)."""
        return expected_cost(self._cost_terms()[1], probs, num_options=self.num_options.tolist(),
                             cache=self._torch_cache["params"])

    def check_probs(self, probs: Sequence[torch.Tensor]) -> None:
        """Refuses probabilities of the wrong count or shapes."""
        check_probs(probs, self.num_options.tolist())
