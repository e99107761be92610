"""Cell search spaces (NAS-Bench-201, DARTS): encodings, dead edges, and networks checked against the
reference implementations in xautodl (NAS-Bench-201's own model code; ``make venv`` installs it).
"""

from __future__ import annotations

import contextlib
import io
import itertools
from types import ModuleType

import pytest
import torch
from torch import nn

from hwnas.errors import InputError
from hwnas.space.cells import (
    CELL_OPS,
    DARTS_V1,
    DARTS_V2,
    EDGES,
    NB201_OPS,
    NUM_CELLS,
    DartsCell,
    DartsGenotype,
    DartsNet,
    NB201Cell,
    NB201Net,
    all_cells,
    darts_live_edges,
    flops,
    format_nb201,
    live_edges,
    make_op,
    params,
    parse_nb201,
)
from hwnas.space.cost import fvcore_flops

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
#: Cells without dead edges (no ``none``).
NO_DEAD = [
    ALL_CONV3,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
]
#: Cells with dead edges, and the live flags worked out by hand.
DEAD_BY_HAND = [
    (ALL_NONE, (False,) * 6),
    # 0->1 conv, but node 1 reaches nothing: only the skip 0->3 is live
    ("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", (False, False, False, True, False, False)),
    # node 1 unreachable (1<-0 none): its out-edges 2<-1 and 3<-1 are dead
    (
        "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        (False, True, False, False, False, True),
    ),
    # output has no non-none input: nothing reaches it
    ("|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|none~1|none~2|", (False,) * 6),
    # NAS-Bench-201's ResNet cell: 0->1->2 convs plus skips 0->3 and 2->3
    (
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
        (True, False, True, True, False, True),
    ),
]
SKELETON_PARAMS = 73_306  # stem 464 + reductions 14,464 + 57,600 + last BN 128 + classifier 650


# --------------------------------------------------------------------------------------------- helpers


def _xautodl(name: str) -> ModuleType:
    return pytest.importorskip(f"xautodl.{name}", reason="xautodl (test-only reference) is not installed")


def _ref_nb201(s: str) -> nn.Module:
    tiny = _xautodl("models.cell_infers.tiny_network")
    genotypes = _xautodl("models.cell_searchs.genotypes")
    return tiny.TinyNetwork(16, 5, genotypes.Structure.str2structure(s), 10)


def _ref_darts(genotype: DartsGenotype, *, channels: int, layers: int) -> nn.Module:
    """xautodl's DARTS evaluation network (``nas_infer_model.DXYs``), 3N+2 cells, no auxiliary head."""
    cifar = _xautodl("nas_infer_model.DXYs.CifarNet")
    ref_genotypes = _xautodl("nas_infer_model.DXYs.genotypes")
    assert (layers - 2) % 3 == 0
    by_node = lambda pairs: [tuple(pairs[k : k + 2]) for k in range(0, len(pairs), 2)]  # noqa: E731
    g = ref_genotypes.Genotype(
        normal=by_node(genotype.normal), normal_concat=list(genotype.normal_concat),
        reduce=by_node(genotype.reduce), reduce_concat=list(genotype.reduce_concat), connectN=None, connects=None,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # its cells print their channels
        return cifar.NetworkCIFAR(channels, (layers - 2) // 3, 3, False, g, 10)


def _ref_cells(ref: nn.Module) -> list[tuple[int, nn.Module]]:
    """(index, cell) of the reference TinyNetwork's searched cells (not its reduction blocks)."""
    return [(c, cell) for c, cell in enumerate(ref.cells) if hasattr(cell, "layers")]


def _dead_prefixes(ref: nn.Module, s: str) -> list[str]:
    """Module names of the reference's dead edges: its cells hold ``layers`` in our edge order."""
    dead = [k for k, live in enumerate(live_edges(parse_nb201(s))) if not live]
    return [f"cells.{c}.layers.{k}" for c, _ in _ref_cells(ref) for k in dead]


def _randomize_bn(net: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so a weight copy is tested for real."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _copy_in_order(src: nn.Module, dst: nn.Module, *, skip: list[str] = ()) -> None:
    """Loads ``src``'s state into ``dst`` pairing entries in order (names differ), leaving out ``skip``."""
    items = [(k, v) for k, v in src.state_dict().items() if not any(k.startswith(p + ".") for p in skip)]
    keys = list(dst.state_dict())
    assert len(items) == len(keys)
    for (ks, v), kd in zip(items, keys):
        assert v.shape == dst.state_dict()[kd].shape, (ks, kd)
    dst.load_state_dict(dict(zip(keys, (v for _, v in items))))


def _logits(out: torch.Tensor | tuple) -> torch.Tensor:
    return out[1] if isinstance(out, tuple) else out  # the references return (features, logits)


# ------------------------------------------------------------------------------------ NB201 encoding


def test_round_trip_all_cells():
    cells = list(all_cells())
    assert len(cells) == NUM_CELLS == 15_625 and len(set(cells)) == NUM_CELLS
    strings = {format_nb201(ops) for ops in cells}
    assert len(strings) == NUM_CELLS
    for ops in cells:
        assert parse_nb201(format_nb201(ops)) == ops


def test_format_and_parse_by_hand():
    ops = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "none", "avg_pool_3x3", "nor_conv_3x3")
    s = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    assert format_nb201(ops) == s
    assert parse_nb201(s) == ops
    # edges of one node in any order, surrounding white space ignored
    assert parse_nb201(" |nor_conv_3x3~0|+|nor_conv_1x1~1|skip_connect~0|+|nor_conv_3x3~2|none~0|avg_pool_3x3~1|\n") == ops
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def test_format_matches_reference_structure():
    genotypes = _xautodl("models.cell_searchs.genotypes")
    for ops in itertools.islice(all_cells(), 0, NUM_CELLS, 997):
        s = format_nb201(ops)
        assert genotypes.Structure.str2structure(s).tostr() == s


@pytest.mark.parametrize(
    "s,fragment",
    [
        ("", "node groups"),
        ("|nor_conv_3x3~0|", "has 1 '+'-separated node groups"),
        (ALL_CONV3 + "+|none~0|", "has 4"),
        ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1"),
        ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "lists 1 edges, expected 2"),
        ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|none~2|", "lists 4 edges"),
        ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_3x3'"),
        ("|nor_conv_3x3-0|+|none~0|none~1|+|none~0|none~1|none~2|", "not of the form op~j"),
        ("|nor_conv_3x3~0~1|+|none~0|none~1|+|none~0|none~1|none~2|", "not of the form op~j"),
        ("|nor_conv_3x3~x|+|none~0|none~1|+|none~0|none~1|none~2|", "non-integer source"),
        ("|nor_conv_3x3~|+|none~0|none~1|+|none~0|none~1|none~2|", "non-integer source"),
        ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "from node 1"),
        ("|nor_conv_3x3~0|+|none~0|none~0|+|none~0|none~1|none~2|", "edge 0->2 twice"),
        ("||+|none~0|none~1|+|none~0|none~1|none~2|", "not of the form op~j"),
        (42, "must be a string"),
    ],
)
def test_malformed_strings_raise_input_error(s, fragment):
    with pytest.raises(InputError) as info:
        parse_nb201(s)
    message = str(info.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("ops", [("none",) * 5, ("none",) * 7, ("conv",) * 6, "none" * 6])
def test_bad_op_tuples_raise_input_error(ops):
    with pytest.raises(InputError):
        format_nb201(ops)
    with pytest.raises(InputError):
        live_edges(ops)
    with pytest.raises(InputError):
        NB201Net(cell_ops=ops)


# ---------------------------------------------------------------------------------------- dead edges


@pytest.mark.parametrize("s,expected", DEAD_BY_HAND + [(s, (True,) * 6) for s in NO_DEAD])
def test_live_edges_by_hand(s, expected):
    assert live_edges(parse_nb201(s)) == expected


def test_live_edges_equal_path_enumeration_for_every_cell():
    """An edge is live iff it lies on one of the 4 input→output paths whose edges are all non-none."""
    paths = [(0, 3), (0, 1, 3), (0, 2, 3), (0, 1, 2, 3)]
    index = {e: k for k, e in enumerate(EDGES)}
    path_edges = [[index[(b, a)] for a, b in zip(p, p[1:])] for p in paths]
    for ops in all_cells():
        live = [False] * 6
        for edges in path_edges:
            if all(ops[k] != "none" for k in edges):
                for k in edges:
                    live[k] = True
        assert live_edges(ops) == tuple(live), ops


def test_output_reachable_agrees_with_reference_check_valid():
    genotypes = _xautodl("models.cell_searchs.genotypes")
    for ops in itertools.islice(all_cells(), 0, NUM_CELLS, 41):
        assert any(live_edges(ops)) == genotypes.Structure.str2structure(format_nb201(ops)).check_valid()


# ------------------------------------------------------------------------------ NB201 network vs reference


def test_all_conv3x3_params():
    assert params(NB201Net(cell_ops=parse_nb201(ALL_CONV3))) == 1_531_546


@pytest.mark.parametrize("s", NO_DEAD)
def test_nb201_params_and_flops_equal_reference(s):
    ours, ref = NB201Net(cell_ops=parse_nb201(s)), _ref_nb201(s)
    assert params(ours) == params(ref)
    x = torch.zeros(1, 3, 32, 32)
    assert fvcore_flops(ours, x) == fvcore_flops(ref, x) == flops(ours)


@pytest.mark.parametrize("s", [s for s, _ in DEAD_BY_HAND])
def test_nb201_dead_edges_remove_exactly_their_params_and_flops(s):
    from fvcore.nn import FlopCountAnalysis

    ours, ref = NB201Net(cell_ops=parse_nb201(s)), _ref_nb201(s)
    dead = _dead_prefixes(ref, s)
    modules = dict(ref.named_modules())
    dead_params = sum(params(modules[p]) for p in dead)
    assert params(ours) == params(ref) - dead_params
    ref.eval()
    fca = FlopCountAnalysis(ref, torch.zeros(1, 3, 32, 32))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_module = fca.by_module()
    assert flops(ours) == fca.total() - sum(by_module[p] for p in dead)


@pytest.mark.parametrize("s", NO_DEAD[:3] + [DEAD_BY_HAND[1][0], DEAD_BY_HAND[4][0]])
def test_nb201_forward_equals_reference_with_copied_weights(s):
    """Dead edges whose source is live (their output is never used) are skipped in the copy."""
    torch.manual_seed(0)
    ours, ref = NB201Net(cell_ops=parse_nb201(s)), _ref_nb201(s)
    _randomize_bn(ref, seed=1)
    _copy_in_order(ref, ours, skip=_dead_prefixes(ref, s))
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), _logits(ref(x)), rtol=1e-5, atol=1e-5)


def test_nb201_unreachable_source_differs_from_reference_only_by_bn_shift():
    """The reference runs a conv on an all-zero node: its output is the BN shift, not zero. With that
    shift zeroed the two networks agree; with it random they do not (documented divergence)."""
    s = DEAD_BY_HAND[2][0]
    torch.manual_seed(0)
    ours, ref = NB201Net(cell_ops=parse_nb201(s)), _ref_nb201(s)
    _randomize_bn(ref, seed=2)
    dead = _dead_prefixes(ref, s)
    _copy_in_order(ref, ours, skip=dead)
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(ours(x), _logits(ref(x)), atol=1e-4)
        modules = dict(ref.named_modules())
        for p in dead:
            for m in modules[p].modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.zero_(), m.bias.data.zero_()
        torch.testing.assert_close(ours(x), _logits(ref(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("s", [ALL_NONE, DEAD_BY_HAND[3][0]])
def test_cell_without_path_outputs_zeros_and_costs_nothing(s):
    ops = parse_nb201(s)
    cell = NB201Cell(cell_ops=ops, channels=16)
    assert params(cell) == 0 and len(cell.edges) == 0
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(cell(x), torch.zeros_like(x))
    net = NB201Net(cell_ops=ops)
    assert params(net) == SKELETON_PARAMS == params(_ref_nb201(ALL_NONE))
    assert flops(net) == flops(NB201Net(cell_ops=parse_nb201(ALL_NONE)))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_nb201_network_options():
    net = NB201Net(cell_ops=parse_nb201(ALL_CONV3), channels=8, cells_per_stage=1, num_classes=3)
    assert len(net.cells) == 5  # cell, reduction, cell, reduction, cell
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    with pytest.raises(TypeError):
        NB201Net(parse_nb201(ALL_CONV3))  # keyword-only


# ------------------------------------------------------------------------------------------------- ops


@pytest.mark.parametrize("name", sorted(CELL_OPS))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_shapes(name, stride):
    op = make_op(name, c_in=8, c_out=8, stride=stride, affine=True)
    y = op(torch.randn(2, 8, 9, 9))
    assert y.shape == (2, 8, 9 if stride == 1 else 5, 9 if stride == 1 else 5)


def test_op_params_by_hand():
    c = 8
    count = lambda name, affine=True: params(make_op(name, c_in=c, c_out=c, stride=1, affine=affine))  # noqa: E731
    assert count("nor_conv_3x3") == 9 * c * c + 2 * c
    assert count("nor_conv_1x1") == c * c + 2 * c
    assert count("sep_conv_3x3") == 2 * (9 * c + c * c + 2 * c)
    assert count("sep_conv_5x5") == 2 * (25 * c + c * c + 2 * c)
    assert count("dil_conv_3x3") == 9 * c + c * c + 2 * c
    assert count("dil_conv_5x5") == 25 * c + c * c + 2 * c
    assert count("sep_conv_3x3", affine=False) == 2 * (9 * c + c * c)
    assert params(make_op("skip_connect", c_in=c, c_out=c, stride=2, affine=True)) == c * (c // 2) * 2 + 2 * c
    for name in ("none", "skip_connect", "avg_pool_3x3", "max_pool_3x3"):
        assert count(name) == 0
    with pytest.raises(KeyError):
        make_op("conv_7x1_1x7", c_in=c, c_out=c, stride=1, affine=True)


def test_avg_pool_does_not_count_padding():
    y = make_op("avg_pool_3x3", c_in=1, c_out=1, stride=1, affine=True)(torch.ones(1, 1, 4, 4))
    assert torch.equal(y, torch.ones(1, 1, 4, 4))


# ------------------------------------------------------------------------------------------------ DARTS


def test_darts_presets_equal_released_genotypes():
    ref = _xautodl("nas_infer_model.DXYs.genotypes")
    for ours, theirs in ((DARTS_V1, ref.DARTS_V1), (DARTS_V2, ref.DARTS_V2)):
        assert ours.normal == tuple(p for node in theirs.normal for p in node)
        assert ours.reduce == tuple(p for node in theirs.reduce for p in node)
        assert list(ours.normal_concat) == theirs.normal_concat == list(ours.reduce_concat)


def test_darts_v2_params_equal_reference_and_paper():
    ours = DartsNet(genotype=DARTS_V2)
    n = params(ours)
    assert n == params(_ref_darts(DARTS_V2, channels=36, layers=20)) == 3_349_342
    assert round(n / 1e6, 1) == 3.3  # Liu et al., 2019, Table 1
    assert params(DartsNet(genotype=DARTS_V1)) == params(_ref_darts(DARTS_V1, channels=36, layers=20))


@pytest.mark.slow
def test_darts_v2_flops_equal_reference_full_size():
    x = torch.zeros(1, 3, 32, 32)
    assert flops(DartsNet(genotype=DARTS_V2)) == fvcore_flops(_ref_darts(DARTS_V2, channels=36, layers=20), x)


def _with_none(genotype: DartsGenotype, normal: dict[int, str]) -> DartsGenotype:
    pairs = tuple((normal.get(k, op), src) for k, (op, src) in enumerate(genotype.normal))
    return DartsGenotype(normal=pairs, reduce=genotype.reduce)


@pytest.mark.parametrize("genotype", [DARTS_V1, DARTS_V2, _with_none(DARTS_V2, {3: "none"})])
def test_darts_small_forward_and_flops_equal_reference(genotype):
    """C=16, 5 cells (reductions at 1 and 3); a lone ``none`` (node 3 keeps its other input) is dead
    here and an exact zero in the reference."""
    torch.manual_seed(0)
    ours, ref = DartsNet(genotype=genotype, channels=16, layers=5), _ref_darts(genotype, channels=16, layers=5)
    assert params(ours) == params(ref)
    x = torch.zeros(1, 3, 32, 32)
    assert flops(ours) == fvcore_flops(ref, x)
    _randomize_bn(ref, seed=3)
    _copy_in_order(ref, ours)
    ours.eval(), ref.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), _logits(ref(x)), rtol=1e-5, atol=1e-5)


def test_darts_dead_node_is_zero_and_its_out_edges_are_not_built():
    g = _with_none(DARTS_V2, {0: "none", 1: "none"})  # node 2 has no live input; 5<-2 becomes dead
    assert darts_live_edges(g.normal, g.normal_concat) == (False, False, True, True, True, True, True, False)
    assert darts_live_edges(DARTS_V2.normal, DARTS_V2.normal_concat) == (True,) * 8
    cell = DartsCell(
        pairs=g.normal, concat=g.normal_concat, c_prev_prev=8, c_prev=8, channels=8,
        reduction=False, reduction_prev=False,
    )  # fmt: skip
    assert set(cell.edges) == {"3<-0", "3<-1", "4<-1", "4<-0", "5<-0"}
    out = cell(torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6))
    assert out.shape == (2, 32, 6, 6) and torch.equal(out[:, :8], torch.zeros(2, 8, 6, 6))
    ours, ref = DartsNet(genotype=g, channels=16, layers=8), _ref_darts(g, channels=16, layers=8)
    normal_channels = [16, 16, 32, 32, 64, 64]  # layers 0, 1, 3, 4, 6, 7 (2 and 5 reduce)
    dead_dil = sum(params(make_op("dil_conv_3x3", c_in=c, c_out=c, stride=1, affine=True)) for c in normal_channels)
    assert params(ours) == params(ref) - dead_dil


def test_darts_unread_input_has_no_preprocessing():
    pairs = (("sep_conv_3x3", 1), ("none", 0), ("sep_conv_3x3", 1), ("max_pool_3x3", 2))  # node 0: only none
    g = DartsGenotype(normal=pairs, reduce=pairs, normal_concat=(2, 3), reduce_concat=(2, 3))
    cell = DartsCell(pairs=g.reduce, concat=g.reduce_concat, c_prev_prev=8, c_prev=8, channels=4,
                     reduction=True, reduction_prev=False)  # fmt: skip
    assert cell.preprocess0 is None and cell.preprocess1 is not None
    assert cell(torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)).shape == (1, 8, 4, 4)
    assert DartsNet(genotype=g, channels=4, layers=5)(torch.randn(1, 3, 16, 16)).shape == (1, 10)


@pytest.mark.parametrize(
    "normal,concat,fragment",
    [
        ((("sep_conv_3x3", 0),), (2,), "even-length"),
        ((("conv_9x9", 0), ("skip_connect", 1)), (2,), "unknown op 'conv_9x9'"),
        ((("sep_conv_3x3", 0), ("skip_connect", 2)), (2,), "from 2"),
        ((("sep_conv_3x3", 0), ("skip_connect", -1)), (2,), "from -1"),
        ((("sep_conv_3x3", 0), ("skip_connect", "1")), (2,), "from '1'"),
        ((("sep_conv_3x3", 1), ("skip_connect", 1)), (2,), "takes input 1 twice"),
        ((("sep_conv_3x3", 0), ("skip_connect", 1)), (3,), "concat lists 3"),
        ((("sep_conv_3x3", 0), ("skip_connect", 1)), (2, 2), "a node twice"),
        ((("sep_conv_3x3", 0), ("skip_connect", 1)), (), "concat must list"),
        (("sep_conv_3x3", "skip_connect"), (2,), "(op, input node) pair"),
    ],
)
def test_bad_genotypes_raise_input_error(normal, concat, fragment):
    with pytest.raises(InputError) as info:
        DartsGenotype(normal=normal, reduce=DARTS_V2.reduce, normal_concat=concat)
    assert fragment in str(info.value)
