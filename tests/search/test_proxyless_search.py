"""ProxylessNAS strategy: the latency loss on a flat-accuracy toy, the two-path gates on the real
supernet, REINFORCE, and ``hwnas search --strategy proxyless`` end to end (with kill and resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.cli.main import main
from hwnas.latency.batch import BatchPredictor
from hwnas.latency.model import LatencyModel
from hwnas.search.dnas import ArchParams
from hwnas.search.objective import Constraints
from hwnas.search.proxyless_steps import ArchObjective, ProxylessConfig, ProxylessSteps
from hwnas.space.loader import load_space
from hwnas.supernet.binary_gates import gated_forward, one_hot_gates, sample_two_paths
from hwnas.supernet.supernet import SuperNet
from tests.conftest import TOY_SPACE, read_history, search_runner, synthetic_table

# ---- toy: flat accuracy, only the latency term can move α ---------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    space = load_space(TOY_SPACE)
    path = synthetic_table(str(TOY_SPACE), resolution=8, width_mult=1.0, num_classes=4,
                           path=tmp_path_factory.mktemp("toy") / "toy_table.json")
    predictor = BatchPredictor.build(LatencyModel.load(path), space, resolution=8, width_mult=1.0, num_classes=4)
    return space, predictor


def _flat_supernet(space, *, bias: list[float]) -> SuperNet:
    """A toy supernet whose classifier ignores its input: every path has the same logits."""
    torch.manual_seed(0)
    sn = SuperNet(space, resolution=8, num_classes=4)
    linears = [m for m in sn.modules() if isinstance(m, nn.Linear)]
    assert linears
    with torch.no_grad():
        for m in linears:
            m.weight.zero_()
            m.bias.copy_(torch.tensor(bias))
    return sn


def _cheapest(predictor, num_options) -> list[int]:
    """Per decision (toy: one decision per layer), the option of smallest predicted latency."""
    out = []
    for d, n in enumerate(num_options):
        lat = []
        for o in range(n):
            idx = np.zeros(len(num_options), dtype=np.int64)
            idx[d] = o
            lat.append(float(predictor.latency(idx[None])[0]))
        out.append(int(np.argmin(lat)))
    return out


def _run_arch_steps(space, predictor, cfg: ProxylessConfig, *, steps: int, bias, labels) -> ArchParams:
    sn = _flat_supernet(space, bias=bias)
    arch = ArchParams(space.num_options)
    obj = ArchObjective(config=cfg, predictor=predictor, constraints=Constraints(latency_ms=0.02))
    stepper = ProxylessSteps(cfg=cfg, supernet=sn, arch=arch, objective=obj, state=None)
    opt = torch.optim.Adam(arch.parameters(), lr=0.05, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.tensor(labels)
    for s in range(steps):
        rng = np.random.default_rng([3, s])
        opt.zero_grad(set_to_none=True)
        if cfg.mode == "gradient":
            stepper.arch_gradient(x, y, rng, s)
        else:
            stepper.arch_reinforce(x, y, rng, s)
        opt.step()
        stepper.after_arch_step(s)
    return arch


@pytest.mark.parametrize("loss", ["mul", "add"])
def test_latency_loss_pulls_alpha_to_cheaper_ops_when_accuracy_is_flat(toy, loss):
    space, predictor = toy
    with torch.no_grad():
        start = float(predictor.expected_latency(ArchParams(space.num_options).probs()))
    arch = _run_arch_steps(space, predictor, ProxylessConfig(loss=loss), steps=60, bias=[0.0] * 4,
                           labels=[0, 1, 2, 3] * 2)
    cheapest = _cheapest(predictor, space.num_options)
    assert cheapest == [0, 1, 2]  # k3, skip, skip: the synthetic table is FLOPs-proportional
    assert arch.derive().tolist() == cheapest
    with torch.no_grad():
        end = float(predictor.expected_latency(arch.probs()))
    assert end < 0.8 * start
    for d, o in enumerate(cheapest):
        assert arch.snapshot()[d][o] > 1.0 / space.num_options[d] + 0.1


def test_flat_accuracy_without_latency_term_leaves_alpha_unchanged(toy):
    """Control: with λ = 0 the binary-gate gradient of a flat loss is exactly zero."""
    space, predictor = toy
    arch = _run_arch_steps(space, predictor, ProxylessConfig(loss="add", lam=0.0), steps=5, bias=[0.0] * 4,
                           labels=[0, 1, 2, 3] * 2)
    assert all(torch.equal(a.detach(), torch.zeros_like(a)) for a in arch.alphas)


def test_reinforce_prefers_cheaper_paths_when_accuracy_is_flat(toy):
    space, predictor = toy
    cfg = ProxylessConfig(mode="reinforce", rl_reward="mnasnet", rl_samples=4, rl_tradeoff=0.5)
    arch = _run_arch_steps(space, predictor, cfg, steps=80, bias=[1.0, 0, 0, 0], labels=[0] * 8)  # acc = 1
    probs = arch.snapshot()
    for d, o in enumerate(_cheapest(predictor, space.num_options)):
        assert probs[d][o] > 1.0 / space.num_options[d] + 0.05, probs


# ---- two-path gates on the real supernet --------------------------------------------------------


@pytest.mark.parametrize("name", ["proxyless", "ofa-mbv3"])
def test_gated_forward_gives_the_gate_gradients_of_weighted_forward(name):
    """The memory-saving two-path forward against the supernet's DARTS-style weighted forward with
    the same one-hot gates and ``compute`` = the two sampled options per decision."""
    sp = load_space(name)
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10).double().train()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    paths = sample_two_paths([torch.randn(n) for n in sp.num_options], np.random.default_rng(3))
    grads = []
    for fwd in ("gated", "weighted"):
        gates = one_hot_gates(paths.active, sp.num_options, dtype=torch.float64)
        torch.manual_seed(5)  # same dropout mask
        if fwd == "gated":
            logits = gated_forward(sn, x, gates, paths)
        else:
            logits = sn.weighted_forward(x, gates, compute=[paths.pair(d) for d in range(len(gates))])
        nn.functional.cross_entropy(logits, y).backward(inputs=gates)
        grads.append(torch.cat([g.grad for g in gates]))
    assert grads[0].abs().max() > 1e-3  # non-trivial
    assert torch.allclose(grads[0], grads[1], atol=1e-10)


def test_arch_step_moves_only_the_two_sampled_entries_and_keeps_unsampled_probabilities(tables):
    """Sec. 3.2.1: α gets gradient on the two sampled options only (BinaryConnect and the latency
    term under the two-path distribution); after Adam (β1 = 0) and the rescaling, every unsampled
    option keeps its probability."""
    sp = load_space("proxyless")
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10).train()
    pred = BatchPredictor.build(LatencyModel.load(tables["proxyless"]), sp, resolution=32, width_mult=0.25, num_classes=10)
    arch = ArchParams(sp.num_options)
    with torch.no_grad():
        for a in arch.alphas:
            a.normal_(0.0, 0.5)
    cfg = ProxylessConfig()
    stepper = ProxylessSteps(cfg=cfg, supernet=sn, arch=arch, state=None,
                     objective=ArchObjective(config=cfg, predictor=pred, constraints=Constraints(latency_ms=0.2)))
    opt = torch.optim.Adam(arch.parameters(), lr=0.05, betas=(0.0, 0.999))
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    paths = sample_two_paths(list(arch.alphas), np.random.default_rng(0))
    before = [a.detach().clone() for a in arch.alphas]
    opt.zero_grad(set_to_none=True)
    metrics = stepper.arch_gradient_on(x, y, paths)
    with torch.no_grad():
        assert metrics["expected_latency_ms"] == pytest.approx(float(pred.expected_latency(arch.probs())))
    masks = []
    for d, a in enumerate(arch.alphas):
        mask = torch.zeros(a.numel(), dtype=torch.bool)
        mask[paths.pair(d)] = True
        masks.append(mask)
        assert torch.equal(a.grad[~mask], torch.zeros(int((~mask).sum())))
        assert a.grad[mask].abs().sum() > 0
    opt.step()
    stepper.after_arch_step(0)
    for a, old, mask in zip(arch.alphas, before, masks):
        a = a.detach()
        assert torch.equal(a[~mask], old[~mask])
        p_new, p_old = torch.softmax(a, 0), torch.softmax(old, 0)
        assert torch.allclose(p_new[~mask], p_old[~mask], atol=1e-6)
        assert not torch.allclose(a[mask], old[mask], atol=1e-3)


# ---- CLI ----------------------------------------------------------------------------------------

COMMON = ["--strategy", "proxyless", "--proxyless-loss", "mul", "--data-limit", "128", "--epochs", "2", "--bn-batches", "1",
          "--proxyless-arch-lr", "0.05", "--proxyless-samples", "2", "--seed", "3"]


_search = search_runner(*COMMON)



@pytest.fixture(scope="module")
def full_run(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    r = _search("--space", "proxyless", "--table", str(tables["proxyless"]), "--latency-ms", "0.2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_cli_gradient_search_writes_the_run(full_run):
    out, s = full_run
    for f in ("config.json", "history.jsonl", "checkpoint.pt", "summary.json", "best_arch.json", "pareto.png",
              "alpha_heatmap.png"):
        assert (out / f).exists(), f
    assert json.loads((out / "summary.json").read_text()) == s
    assert s["strategy"] == "proxyless" and s["latency_budget_ms"] == 0.2
    ex = s["extra"]
    assert ex["mode"] == "gradient" and ex["loss"] == "mul"
    # the strategy's predicted latency of the derived arch is the one search.py reports
    assert ex["derived_latency_ms"] == pytest.approx(s["predicted_latency_ms"], rel=1e-9)
    assert ex["derived_budget_ratio"] == pytest.approx(s["predicted_latency_ms"] / 0.2, rel=1e-9)
    assert s["constraints_met"] == (s["predicted_latency_ms"] <= 0.2)
    hist = read_history(out)
    assert [h["epoch"] for h in hist] == [1, 2] and {h["phase"] for h in hist} == {"proxyless"}
    space = load_space("proxyless")
    for h in hist:
        assert len(h["probs"]) == len(space.decisions)
        assert all(abs(sum(p) - 1) < 1e-4 for p in h["probs"])
        assert "a_expected_latency_ms" in h and h["budget_ms"] == 0.2
    assert hist[-1]["derived"] == space.encode(s["arch"]).tolist()
    assert ex["final_probs"] == hist[-1]["probs"]
    assert any(abs(v - 1 / len(p)) > 1e-3 for p in ex["final_probs"] for v in p)  # α moved
    assert s["evaluated"] >= 1 and 0.0 <= s["accuracy"] <= 1.0


@pytest.mark.slow
def test_cli_kill_and_resume_gives_the_same_result(full_run, tables, tmp_path):
    ref_out, ref = full_run
    out = tmp_path / "killed"
    args = ["--space", "proxyless", "--table", str(tables["proxyless"]), "--latency-ms", "0.2", "--out", str(out)]
    killed = _search(*args, crash="proxyless_step:3")  # 2 steps per epoch: killed in epoch 2
    assert killed.returncode == 137, killed.stderr
    assert not (out / "summary.json").exists() and len(read_history(out)) == 1
    resumed = _search(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    s = json.loads(resumed.stdout)
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seconds", "table")}  # noqa: E731
    assert strip(s) == strip(ref)
    assert (out / "history.jsonl").read_text() == (ref_out / "history.jsonl").read_text()


def test_cli_reinforce_on_ofa_mbv3_with_flops_penalty(tables, tmp_path, capsys, monkeypatch):
    """In process, with a spy on ``ArchObjective.reward`` (it calls the real method): every sampled
    path's reward recomputed by hand from the table and a FLOPs count of its blocks,
    R = ACC · (LAT / T)^−0.1 · (FLOPs / FLOPs_max)^−0.1 (MnasNet's soft reward, w = 0.1 on both sides of T)."""
    from hwnas.latency.table import LatencyTable
    from hwnas.space.cost import CostCounter

    seen = []
    real = ArchObjective.reward

    def spy(self, acc, indices):
        r = real(self, acc, indices)
        seen.append((np.array(acc, dtype=np.float64), np.array(indices), np.array(r)))
        return r

    monkeypatch.setattr(ArchObjective, "reward", spy)
    out = tmp_path / "rl"
    T, FLOPS_MAX = 1.0, 5e6
    code = main(["search", *COMMON, "--space", "ofa-mbv3", "--table", str(tables["ofa-mbv3"]), "--latency-ms", str(T),
                 "--out", str(out), "--proxyless-mode", "reinforce", "--proxyless-rl-reward", "mnasnet",
                 "--proxyless-rl-samples", "2", "--flops-max", str(FLOPS_MAX), "--proxyless-flops-weight", "0.1",
                 "--epochs", "1", "--proxyless-warmup-epochs", "0", "--json"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    s = json.loads(cap.out)
    assert s["extra"]["mode"] == "reinforce" and s["extra"]["loss"] == "reward"
    (h,) = read_history(out)
    space = load_space("ofa-mbv3")
    assert len(h["probs"]) == len(space.decisions)
    assert (out / "alpha_heatmap.png").exists()
    # 128 arch-split images, batch 64: 2 architecture steps of 2 sampled paths each
    assert len(seen) == 2 and all(idx.shape == (2, len(space.decisions)) for _, idx, _ in seen)
    table, counter = LatencyTable.load(tables["ofa-mbv3"]), CostCounter()
    factors = []
    for acc, idx, rewards in seen:
        assert np.allclose(acc * 64, np.round(acc * 64))  # a fraction of the 64 arch-batch images
        for a, path, r in zip(acc, idx, rewards):
            blocks = space.resolve(space.decode(path, resolution=32, width_mult=0.25, num_classes=10))
            lat = table.lookup_sum(blocks)[0]  # ms: the table's entries of the path's blocks
            flops = counter.blocks(blocks).flops
            factor = (flops / FLOPS_MAX) ** -0.1
            factors.append(factor)
            assert r == pytest.approx(a * (lat / T) ** -0.1 * factor, rel=1e-9)
    assert max(abs(f - 1) for f in factors) > 1e-3  # the FLOPs factor matters in these samples
    # the epoch's recorded reward: the mean over the steps of each step's mean reward
    assert h["a_reward"] == pytest.approx(np.mean([r.mean() for _, _, r in seen]), rel=1e-9)
    assert h["a_reward"] > 0 and isinstance(h["baseline"], float)


@pytest.mark.parametrize("extra, words", [
    (["--space", "mnasnet"], "width decisions"),
    (["--space", "proxyless", "--proxyless-flops-weight", "0.1"], "--flops-max"),
    (["--space", "proxyless", "--proxyless-warmup-epochs", "2"], "--proxyless-warmup-epochs 2"),
    (["--space", "proxyless", "--proxyless-rl-samples", "0"], "--proxyless-rl-samples"),
])
def test_bad_flags_exit_2_before_writing_anything(tmp_path, capsys, extra, words):
    out = tmp_path / "r"
    code = main(["search", *COMMON, "--table", str(tmp_path / "none.json"), "--latency-ms", "0.2", "--out", str(out),
                 *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()


def test_the_reinforce_baseline_moves_before_use_as_the_reference_code():
    from hwnas.search.proxyless_steps import reference_baseline

    assert reference_baseline(None, 0.4, weight=0.99) == pytest.approx(0.4)  # first step: the mean
    assert reference_baseline(0.5, 0.7, weight=0.99) == pytest.approx(0.698)  # 0.5 + 0.99 * (0.7 - 0.5)
    assert reference_baseline(0.5, 0.7, weight=1.0) == pytest.approx(0.7)
