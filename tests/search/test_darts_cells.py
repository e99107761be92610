"""DARTS on the ``darts`` space: the 14-edge relaxation of Eq. 1-2 on the shared supernet, its derivation
(two strongest non-``none`` inputs per node, Sec. 2.4), the expected latency of the derived cell and the
memory estimate. The table is synthetic: mechanics, not measurements."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.latency import BatchPredictor, LatencyModel
from hwnas.search.relaxation import DartsCellRelaxation, candidate_blocks, relaxation_for
from hwnas.space import load_space
from hwnas.space.cells.derive import RELAXED_EDGES
from hwnas.supernet import SuperNet
from tests.conftest import synthetic_table

SP = load_space("darts")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[DartsCellRelaxation, BatchPredictor]:
    table = synthetic_table("darts", resolution=16, width_mult=0.25, num_classes=10,
                            path=tmp_path_factory.mktemp("darts") / "t.json")
    pred = BatchPredictor.build(LatencyModel.load(table), SP, resolution=16, width_mult=0.25, num_classes=10)
    torch.manual_seed(0)
    net = SuperNet(SP, resolution=16, width_mult=0.25, num_classes=10).eval()
    relax = relaxation_for(supernet=net, predictor=pred)
    assert isinstance(relax, DartsCellRelaxation)
    return relax, pred


def genotype_weights(relax: DartsCellRelaxation, idx: np.ndarray) -> list[torch.Tensor]:
    """One-hot edge weights of a genotype: its 8 edges per cell type take their op, the rest ``none``."""
    w = [torch.zeros(len(relax.edges.ops)) for _ in relax.edges.rows]
    for v in w:
        v[0] = 1.0  # none
    for slot in relax.supernet.slots:
        if len(slot.decisions) == 2:
            row = relax.edges.row(decisions=tuple(slot.decisions), pair=int(idx[slot.decisions[0]]))
            w[row].zero_()
            w[row][relax.edges.ops.index(SP.spec.ops[int(idx[slot.decisions[1]])])] = 1.0
    return w


def test_the_relaxation_has_14_edges_per_cell_type_with_none_and_every_candidate_once(setup):
    relax, _ = setup
    assert len(relax.edges.rows) == 28 and relax.edges.rows[:3] == ("normal.2<-0", "normal.2<-1", "normal.3<-0")
    assert relax.edges.ops == ("none",) + SP.spec.ops and relax.num_options == (8,) * 28
    # 8 cells x 14 edges x 7 ops, plus the stem, 2 preprocessing blocks and the output of each cell, the head
    assert len(relax.edges.steps()) == 8 * 14 * 7 + 1 + 8 * 3 + 1
    blocks = candidate_blocks(SP, resolution=16, width_mult=0.25, num_classes=10)
    assert len(blocks) == len(relax.edges.steps())  # a node's 1st- and 2nd-input slots share their edges


@pytest.mark.parametrize("preset", ["darts_v1", "darts_v2"])
def test_one_hot_edge_weights_are_the_genotype_its_latency_and_derive_back_to_it(setup, preset):
    relax, pred = setup
    idx = SP.encode(SP.preset(preset, resolution=16, width_mult=0.25, num_classes=10))
    w = genotype_weights(relax, idx)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(relax.forward(x, w), relax.supernet(x, idx))
    assert relax.derive([torch.log(v + 1e-6) for v in w]).tolist() == idx.tolist()
    # the derived cell's expected latency at a one-hot point is the table's prediction of that cell
    assert float(relax.expected_latency(w)) == pytest.approx(float(pred.latency(idx[None])[0]), rel=1e-6)


def test_a_node_is_the_softmax_weighted_sum_over_all_its_inputs_and_ops(setup):
    relax, _ = setup
    net = relax.supernet
    torch.manual_seed(1)
    probs = [torch.softmax(torch.randn(8), 0) for _ in relax.edges.rows]
    seen = []
    real = net.run_step
    net.run_step = lambda step, *x: seen.append((step, x, y := real(step, *x))) or y  # noqa: E731
    try:
        with torch.no_grad():
            relax.forward(torch.randn(2, 3, 16, 16), probs)
    finally:
        del net.run_step
    # node 3 of the first cell: its 3 incoming edges x 7 non-none ops ran, and the cell output reads their sum
    into3 = [(s, y) for s, _, y in seen if s.block.dst == "c0.n3"]
    assert len(into3) == 3 * 7
    want = sum(probs[RELAXED_EDGES.index((3, int(s.block.src[0][-1])))][relax.edges.ops.index(s.block.op if
               s.block.op != "skip" else "skip_connect")] * y for s, y in into3)
    nodes = next(x for s, x, _ in seen if s.block.slot == "c0.out")  # the output concatenates nodes 2..5
    assert len(nodes) == 4 and torch.allclose(nodes[1], want, atol=1e-6)


def test_the_expected_latency_of_uniform_edges_is_the_mean_over_two_kept_edges_per_node(setup):
    relax, _ = setup
    lat = relax._lat  # rows, ops: ms per edge and op, summed over the cells of its type
    probs = [torch.full((8,), 1 / 8, dtype=torch.float64) for _ in relax.edges.rows]
    # equal non-none mass everywhere: node j keeps each of its j inputs with weight 2/j, op mean over 7
    want = relax._const + sum(2 / j * lat[r, 1:].mean() for r, (j, _) in enumerate(RELAXED_EDGES * 2))
    assert float(relax.expected_latency(probs)) == pytest.approx(want, rel=1e-9)
    p = [v.clone().requires_grad_() for v in probs]
    relax.expected_latency(p).backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in p)
