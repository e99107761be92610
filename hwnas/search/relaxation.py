"""What DARTS relaxes: the mixed network, its derivation and its expected latency, per space family.

DARTS (Liu et al., ICLR 2019) searches a continuous relaxation: one weight vector per relaxed choice,
a mixed op that sums every candidate under softmax(α) (Sec. 2.1, Eq. 2), and a derivation of the
discrete architecture at the end (Sec. 2.4). What the relaxed choices are depends on the space:

* ``DecisionRelaxation`` (chain spaces, NAS-Bench-201): the space's own decisions; each slot mixes
  its candidates (``SuperNet.weighted_forward``); an edge's ``none`` is the zero op; derivation is
  the argmax of each decision's non-``none`` weights; E[LAT] is the table's exact expectation.
* ``DartsCellRelaxation`` (the ``darts`` space, whose decisions are discrete genotypes): the 2 × 14
  edges of Eq. 1 with ``none`` added (``hwnas.supernet.cell_relaxation``); derivation keeps the two
  strongest non-``none`` inputs per node (Sec. 2.4, ``hwnas.space.cells.derive``).

Both give the same interface to the ``darts`` strategy: ``num_options``, ``labels``, ``forward``,
``derive`` (option indices of the *space*) and ``expected_latency``.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch

from hwnas.latency import BatchPredictor
from hwnas.space import Block, SearchSpace
from hwnas.space.cells.darts_genotype import INPUTS_PER_NODE
from hwnas.space.cells.derive import RELAXED_EDGES, derive_choices
from hwnas.supernet import SuperNet
from hwnas.supernet.cell_relaxation import NONE, CellEdgeRelaxation


class Relaxation(Protocol):
    """The relaxed choices DARTS puts weights on (see the module docstring)."""

    num_options: tuple[int, ...]

    def labels(self) -> tuple[list[str], list[list[str]]]:
        """Row names and option names, for the heatmap."""

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits of the mixed network under one weight vector per relaxed choice."""

    def derive(self, alphas: Sequence[torch.Tensor]) -> np.ndarray:
        """The derived architecture, as the space's option indices (Sec. 2.4)."""

    def expected_latency(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """A differentiable latency of the distribution, ms."""


def derive_non_none(space: SearchSpace, alphas: Sequence[torch.Tensor]) -> np.ndarray:
    """Per decision, the argmax of α over its options other than ``none`` (Sec. 2.4)."""
    out = []
    for d, a in zip(space.decisions, alphas):
        v = a.detach().clone()
        for k, o in enumerate(d.options):
            if str(o) == NONE and len(d.options) > 1:
                v[k] = -float("inf")
        out.append(int(torch.argmax(v)))
    return np.array(out, dtype=np.int64)


class DecisionRelaxation:
    """The space's decisions as DARTS's relaxed choices (chain spaces and NAS-Bench-201)."""

    def __init__(self, *, supernet: SuperNet, predictor: BatchPredictor) -> None:
        self.space, self.supernet, self.predictor = supernet.space, supernet, predictor
        self.num_options = tuple(int(n) for n in self.space.num_options)

    def labels(self) -> tuple[list[str], list[list[str]]]:
        return [d.name for d in self.space.decisions], [[str(o) for o in d.options] for d in self.space.decisions]

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.supernet.weighted_forward(x, weights)

    def derive(self, alphas: Sequence[torch.Tensor]) -> np.ndarray:
        return derive_non_none(self.space, alphas)

    def expected_latency(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The table's exact E[LAT] under independent decisions (``BatchPredictor.expected_latency``)."""
        return self.predictor.expected_latency(probs)


class DartsCellRelaxation:
    """The 14-edge relaxation of the ``darts`` space's cells (Liu et al. 2019, Sec. 2.1 and 2.4).

    The expected latency is of the *derived* cell, which keeps ``k = 2`` of node j's incoming edges
    (Sec. 2.4) and never ``none``. DARTS has no latency term; the form here is this project's
    smooth stand-in for the top-k choice: edge (i, j) is kept with weight k·m_ij / Σ_i' m_i'j, its
    share of the node's non-``none`` mass m_ij = 1 − p_ij(none), and then takes op o with the
    non-``none`` probability p_ij(o) / m_ij, so

        E[LAT] = c + Σ_j (k / Σ_i m_ij) · Σ_i Σ_{o ≠ none} p_ij(o) · LAT_ij(o)

    where LAT_ij(o) is the table's latency of that edge summed over the cells of its type and c the
    skeleton's (stem, preprocessing, head, calibration). With equal non-``none`` mass on every edge it
    is the mean latency of a cell whose node keeps k random edges; it is differentiable in every
    p_ij(o). The budget term's multiplier follows the derived architecture's exact predicted latency.
    """

    def __init__(self, *, supernet: SuperNet, predictor: BatchPredictor) -> None:
        self.space, self.supernet = supernet.space, supernet
        self.edges = CellEdgeRelaxation(supernet)
        self.num_options = self.edges.num_options
        self._lat, self._const = self._edge_latency(predictor)  # (rows, ops) ms; ms
        nodes = sorted({j for j, _ in RELAXED_EDGES})
        per_type = torch.tensor([nodes.index(j) for j, _ in RELAXED_EDGES])
        self._group = torch.cat([per_type + t * len(nodes) for t in range(len(self.edges.rows) // len(RELAXED_EDGES))])

    def _edge_latency(self, predictor: BatchPredictor) -> tuple[np.ndarray, float]:
        terms, const = predictor.terms("latency")
        lat = np.zeros((len(self.edges.rows), len(self.edges.ops)))
        ops = self.space.spec.ops
        for decisions, arr in terms:
            if not decisions:
                const += float(np.sum(arr))
                continue
            for pair in range(arr.shape[0]):
                row = self.edges.row(decisions=tuple(decisions), pair=pair)
                lat[row, [self.edges.ops.index(o) for o in ops]] = arr[pair]  # Σ over the cells of this type
        return lat, float(const)

    def labels(self) -> tuple[list[str], list[list[str]]]:
        return list(self.edges.rows), [list(self.edges.ops)] * len(self.edges.rows)

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.edges.forward(x, weights)

    def derive(self, alphas: Sequence[torch.Tensor]) -> np.ndarray:
        a = torch.stack([v.detach() for v in alphas]).double().numpy()
        n = len(RELAXED_EDGES)
        choices = derive_choices(a[:n], a[n:], ops=self.edges.ops)
        return self.space.encode(self.space.make_arch(choices))

    def expected_latency(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        p = torch.stack(list(probs))  # rows, ops
        lat = torch.as_tensor(self._lat, dtype=p.dtype)
        mass = 1.0 - p[:, self.edges.ops.index(NONE)]  # rows
        per_node = torch.zeros(int(self._group.max()) + 1, dtype=p.dtype).index_add(0, self._group, mass)
        return self._const + (INPUTS_PER_NODE / per_node[self._group] * (p * lat).sum(1)).sum()


def relaxation_for(*, supernet: SuperNet, predictor: BatchPredictor) -> Relaxation:
    """DARTS's relaxation of the supernet's space: the 14-edge cells of a DARTS-topology space, else
    the space's own decisions."""
    if supernet.space.kind == "cell" and getattr(supernet.space.spec, "topology", None) == "darts":
        return DartsCellRelaxation(supernet=supernet, predictor=predictor)
    return DecisionRelaxation(supernet=supernet, predictor=predictor)


def candidate_blocks(space: SearchSpace, *, resolution: int, width_mult: float, num_classes: int) -> list[Block]:
    """The blocks a fully mixed forward computes: every candidate of every slot, a cell edge once per
    (source, destination, op) even where two slots can hold it (a DARTS node's first and second input)."""
    seen: dict[tuple, Block] = {}
    for slot in space.slots():
        table = space.slot_blocks(slot, resolution=resolution, width_mult=width_mult, num_classes=num_classes)
        for b in table.values():
            if b is not None:  # Block equality ignores where it sits: key by its registers, else its slot
                seen.setdefault((b, b.src, b.dst) if b.dst else (b, slot.name), b)
    return list(seen.values())
