"""Cell spaces through the space format: NAS-Bench-201 and DARTS as decisions → blocks, dead edges
absent from every cost, the supernet on cells, and the CLI (spaces, arch import/show, search)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.latency.batch import BatchPredictor
from hwnas.latency.model import LatencyModel
from hwnas.latency.table import LatencyTable
from hwnas.space import CostCounter, build_model, load_space, op_key
from hwnas.space.build import count_params
from hwnas.space.cells import DARTS_V2, DartsNet, NB201Net, all_cells, format_nb201
from hwnas.supernet.supernet import SuperNet
from tests.conftest import run_cli, synthetic_table

NB = load_space("nasbench201")


def test_every_nb201_string_round_trips_through_the_space():
    for ops in all_cells():
        s = format_nb201(ops)
        assert NB.to_string(NB.from_string(s)) == s


@pytest.mark.parametrize("cell", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_3x3~0|skip_connect~1|none~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|",  # node 2 is dead
    "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|",  # 2<-1 reads a zero node
])
def test_nb201_space_builds_the_reference_network(cell):
    arch = NB.from_string(cell)
    model = build_model(NB.resolve(arch))
    ref = NB201Net(cell_ops=[arch["choices"][d.name] for d in NB.decisions])  # checked against xautodl
    assert count_params(model) == count_params(ref)
    ref.load_state_dict(dict(zip(ref.state_dict(), model.state_dict().values())))
    model.eval(), ref.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), ref(x), atol=1e-5)


def test_dead_edges_are_not_blocks_by_hand():
    # node 1 = conv(x); node 2 = conv(node 1) reaches nothing; node 3 = skip(x)
    arch = NB.from_string("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    slots = [b.slot for b in NB.resolve(arch) if b.slot.startswith("c0.")]
    assert slots == ["c0.3<-0", "c0.out"]  # the cell is the identity
    assert NB.canonical(arch)["choices"] == {**{d.name: "none" for d in NB.decisions}, "3<-0": "skip_connect"}
    empty = NB.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert CostCounter().blocks(NB.resolve(arch)) == CostCounter().blocks(NB.resolve(empty))
    assert [b.op for b in NB.resolve(empty)] == ["conv"] + ["concat"] * 5 + ["resblock"] + ["concat"] * 5 + \
        ["resblock"] + ["concat"] * 5 + ["bn_relu", "classifier"]


def test_batch_latency_leaves_dead_edges_out_for_every_cell(tmp_path):
    table = LatencyTable.load(synthetic_table("nasbench201", resolution=32, width_mult=1.0, num_classes=10,
                                              path=tmp_path / "t.json"))
    model = LatencyModel.from_table(table)
    bp = BatchPredictor.build(model, NB)
    idx = np.array([NB.encode(NB.from_string(format_nb201(c))) for c in all_cells()])
    lat = bp.latency(idx)
    skeleton = sum(table.entries[op_key(b)]["median_ms"] for b in NB.resolve(NB.from_string(
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")) if op_key(b))
    rng = np.random.default_rng(0)
    for i in rng.choice(len(idx), 60, replace=False):
        arch = NB.decode(idx[i])
        assert lat[i] == pytest.approx(model.predict(arch, space=NB).latency_ms, rel=1e-12)
        if not any(b.dst for b in NB.resolve(arch) if b.op != "concat"):
            assert lat[i] == pytest.approx(skeleton)
    assert lat.min() == pytest.approx(skeleton)  # every cell with no live edge costs the skeleton alone


def test_expected_latency_and_minimum_cover_dead_edges(tmp_path):
    from hwnas.space import minimize

    table = LatencyTable.load(synthetic_table("nasbench201", resolution=32, width_mult=1.0, num_classes=10,
                                              path=tmp_path / "t.json"))
    bp = BatchPredictor.build(LatencyModel.from_table(table), NB)
    every = bp.latency(np.array([NB.encode(NB.from_string(format_nb201(c))) for c in all_cells()]))
    uniform = [torch.full((5,), 0.2, dtype=torch.float64) for _ in NB.decisions]
    assert float(bp.expected_latency(uniform)) == pytest.approx(every.mean(), rel=1e-12)  # exact, not an upper bound
    onehot = [torch.nn.functional.one_hot(torch.tensor(i), 5).double() for i in (3, 0, 3, 0, 0, 1)]
    assert float(bp.expected_latency(onehot)) == pytest.approx(float(bp.latency(np.array([3, 0, 3, 0, 0, 1]))[0]))
    lo, arg = minimize(*bp.terms("latency")[:1], NB.num_options, const=bp.terms("latency")[1])
    assert lo == pytest.approx(every.min()) and float(bp.latency(arg)[0]) == pytest.approx(lo)


def test_darts_v2_has_the_published_parameter_count():
    sp = load_space("darts-c36")
    model = build_model(sp.resolve(sp.preset("darts_v2")))
    assert count_params(model) == count_params(DartsNet(genotype=DARTS_V2)) == 3_349_342


@pytest.mark.parametrize("name", ["nasbench201", "darts"])
def test_supernet_paths_equal_extracted_networks(name):
    sp = load_space(name)
    net = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10).eval()
    rng = np.random.default_rng(0)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(3):
        arch = sp.sample(rng, resolution=32, width_mult=0.25, num_classes=10)
        with torch.no_grad():
            y = net(x, arch)
            assert torch.allclose(net.extract(arch).eval()(x), y, atol=1e-6)
            onehot = [torch.nn.functional.one_hot(torch.tensor(int(i)), n).float()
                      for i, n in zip(sp.encode(arch), sp.num_options)]
            assert torch.allclose(net.weighted_forward(x, onehot), y, atol=1e-6)


def test_darts_supernet_shares_an_edge_between_the_two_inputs_of_a_node():
    sp = load_space("darts")
    net = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10)
    a = sp.preset("darts_v2", resolution=32, width_mult=0.25, num_classes=10)
    # node 3 of cell 0 reads inputs 0 and 1; "0,1" puts sep_conv_3x3 from node 0 in slot op_a
    b = {**a, "choices": {**a["choices"], "normal.3.inputs": "0,2", "normal.3.op_a": "sep_conv_3x3"}}
    edge = [s.candidate for s in net.path(a) if s.block.slot == "c0.3.op_a"]
    assert edge == [s.candidate for s in net.path(b) if s.block.slot == "c0.3.op_a"]


def _hwnas(capsys, *argv: str) -> dict:
    """Runs a command in-process (``hwnas.cli.main.main``) and returns its --json object."""
    from hwnas.cli.main import main

    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_spaces_lists_the_cell_spaces_with_their_sizes(capsys):
    rows = {r["name"]: r for r in _hwnas(capsys, "spaces")["spaces"]}
    assert rows["nasbench201"]["size"] == 15_625 and rows["nasbench201"]["kind"] == "cell"
    assert rows["darts"]["size_log10"] == pytest.approx(18.03, abs=0.01) and rows["darts"]["size"] is None


def test_arch_import_nb201_and_show_print_the_string(tmp_path, capsys):
    cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    out = tmp_path / "a.json"
    r = _hwnas(capsys, "arch", "import", "--format", "nb201", cell, "--out", str(out))
    assert r["space"] == "nasbench201" and r["nb201"] == cell
    (tmp_path / "cell.txt").write_text(cell + "\n")
    again = _hwnas(capsys, "arch", "import", "--format", "nb201", str(tmp_path / "cell.txt"), "--out",
                   str(tmp_path / "b.json"))
    assert again["arch"] == r["arch"]
    shown = _hwnas(capsys, "arch", "show", "--arch", str(out))
    assert shown["nb201"] == cell and shown["params"] == r["params"]
    bad = run_cli("arch", "import", "--format", "nb201", "|nor_conv_3x3~0|+|oops~0|", "--out",
                  str(tmp_path / "c.json"))
    assert bad.returncode == 2 and "node groups" in bad.stderr and not (tmp_path / "c.json").exists()


#: Per cell space: resolution and latency budget (ms) of the all-strategies searches (synthetic tables).
CELL_RUNS = {"nasbench201": (32, "0.4"), "darts": (16, "5")}


@pytest.fixture(scope="module")
def cell_tables(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cells")
    return {name: synthetic_table(name, resolution=res, width_mult=0.25, num_classes=10, path=folder / f"{name}.json")
            for name, (res, _) in CELL_RUNS.items()}


def test_a_search_on_the_darts_space(tmp_path, capsys):
    table = synthetic_table("darts", resolution=32, width_mult=0.25, num_classes=10, path=tmp_path / "d.json")
    summary = _hwnas(capsys, "search", "--space", "darts", "--strategy", "spos-evolution", "--table", str(table),
                     "--latency-ms", "5", "--data-limit", "64", "--epochs", "1", "--bn-batches", "1", "--population",
                     "4", "--generations", "1", "--top-k", "2", "--verify", "0", "--out", str(tmp_path / "run"))
    arch = load_space("darts").validate_arch(summary["arch"])
    assert arch["width_mult"] == 0.25 and summary["latency_source"] == "predicted"


#: Strategy → its flags for the tiny all-strategies searches.
STRATEGY_ARGS = {
    "spos-evolution": ["--population", "4", "--generations", "1", "--top-k", "2"],
    "random": ["--population", "4", "--generations", "1", "--top-k", "2"],
    "proxyless": [],
    "msgdas": ["--msgdas-samples", "2"],
    "mnasnet": ["--mnas-steps", "2", "--mnas-archs-per-step", "2"],
    "nasp": ["--nasp-latency-loss", "none"],  # dead edges get no gradient at all
    "gdas": ["--msgdas-samples", "2"],
    "darts": ["--darts-order", "1"],
    "tnas": ["--population", "4", "--generations", "1", "--top-k", "2", "--tnas-topk", "2", "--tnas-pool", "2",
             "--tnas-vae-steps", "10"],
}
#: On the darts space, the strategies whose code takes a path of its own there: DARTS's 14-edge
#: relaxation, MSG-DAS's K = 2 on the one-option input pair of node 2, NASP's proximal step on genotype
#: decisions and TNAS's sampler over them (spos-evolution: ``test_a_search_on_the_darts_space``); the
#: others share NAS-Bench-201's code paths (every one was run on darts for issue 19).
DARTS_SPACE_STRATEGIES = ("msgdas", "nasp", "darts", "tnas")


@pytest.mark.slow
@pytest.mark.parametrize("space,strategy", [("nasbench201", s) for s in STRATEGY_ARGS]
                         + [("darts", s) for s in DARTS_SPACE_STRATEGIES])
def test_every_strategy_searches_the_cell_spaces(cell_tables, tmp_path, capsys, space, strategy):
    res, budget = CELL_RUNS[space]
    extra = STRATEGY_ARGS[strategy]
    sp = load_space(space)
    summary = _hwnas(capsys, "search", "--space", space, "--strategy", strategy, "--table", str(cell_tables[space]),
                     "--latency-ms", budget, "--data-limit", "32", "--batch-size", "16", "--epochs", "1",
                     "--bn-batches", "1", "--seed", "1", "--verify", "0", "--out", str(tmp_path / "run"), *extra)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["arch"] == summary["arch"]
    arch = sp.validate_arch(summary["arch"])
    assert summary["latency_source"] == "predicted" and arch["resolution"] == res
    bp = BatchPredictor.build(LatencyModel.from_table(LatencyTable.load(cell_tables[space])), sp, resolution=res,
                              width_mult=0.25, num_classes=10)
    assert summary["predicted_latency_ms"] == pytest.approx(float(bp.latency(sp.encode(arch))[0]), rel=1e-9)
    if strategy == "darts" and space == "darts":  # the 14-edge relaxation: 2 x 14 rows of 8 (none + 7 ops)
        assert np.shape(summary["extra"]["final_probs"]) == (28, 8)
        assert summary["extra"]["derived"] == sp.encode(arch).tolist()


def test_darts_derivation_keeps_the_two_strongest_non_none_edges_per_node():
    from hwnas.space.cells.cell_spec import genotype_choices
    from hwnas.space.cells.darts_genotype import DARTS_OPS
    from hwnas.space.cells.derive import RELAXED_EDGES, derive_cell, derive_choices

    def alphas(pairs):
        a = np.zeros((len(RELAXED_EDGES), len(DARTS_OPS)))
        a[:, 0] = 5.0  # 'none' dominates every edge: it must never count
        for k, (op, src) in enumerate(pairs):
            a[RELAXED_EDGES.index((2 + k // 2, src)), DARTS_OPS.index(op)] = 4.0 - 0.5 * (k % 2)
        return a

    assert derive_choices(alphas(DARTS_V2.normal), alphas(DARTS_V2.reduce)) == genotype_choices(DARTS_V2)
    # hand-checked: node 3's edge from node 2 has softmax weights (none 0.9, others small) and loses
    a = np.zeros((14, 8))
    a[RELAXED_EDGES.index((3, 2)), :] = [9.0, 1, 1, 1, 1, 1, 1, 1]
    a[RELAXED_EDGES.index((3, 0)), DARTS_OPS.index("sep_conv_5x5")] = 2.0
    a[RELAXED_EDGES.index((3, 1)), DARTS_OPS.index("dil_conv_3x3")] = 1.0
    pairs = derive_cell(a)
    assert pairs[2:4] == (("sep_conv_5x5", 0), ("dil_conv_3x3", 1))


@pytest.mark.parametrize("name", ["nasbench201", "darts", "darts-c36"])
def test_the_shipped_cell_table_covers_its_spaces(name):
    path = Path(__file__).resolve().parents[2] / "latency_tables" / "cpu-ort-1t-cells_r32.json"
    bp = BatchPredictor.build(LatencyModel.load(str(path)), load_space(name), strict=True)
    assert bp.estimated == []
