"""MSG-DAS's exclusive sub-graphs and FairNAS's strict fairness, counted at the weight level (issue 16).

Under ``separate`` sharing, K = 2 Gumbel-TopK draws (MSG-DAS, Sec. 3.1, Eq. 2) and the m paths of a
FairNAS step (Chu et al. 2021, Sec. 3.2, Fig. 2) share no candidate module of a searched layer;
under ``entangled`` sharing they do, which is why the CLI refuses the combinations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.search.strategies.msgdas import sample_subgraphs
from hwnas.space.loader import load_space
from hwnas.supernet.exclusivity import module_uses, shared_modules
from hwnas.supernet.samplers import fair_paths
from hwnas.supernet.supernet import SuperNet, weight_neutral_decisions
from tests.conftest import run_cli

SPACES = ["proxyless", "ofa-mbv3", "mobilenetv2"]
DRAWS = 5


def _supernet(name: str, sharing: str) -> SuperNet:
    return SuperNet(load_space(name), resolution=32, width_mult=0.25, num_classes=10, sharing=sharing)


def _msgdas_draws(sn: SuperNet, *, k: int = 2, seed: int = 0) -> list[np.ndarray]:
    """DRAWS steps of K exclusive sub-graphs, as option indices (k, num_decisions) per step."""
    g = torch.Generator().manual_seed(seed)
    alphas = [torch.randn(n, generator=g) for n in sn.space.num_options]
    draws = []
    for _ in range(DRAWS):
        rows = sample_subgraphs(alphas, k, 1.0, generator=g)
        draws.append(np.stack([r.argmax(-1).numpy() for r in rows], axis=1))
    return draws


def _fair_steps(sn: SuperNet, *, seed: int = 0) -> list[np.ndarray]:
    sample = fair_paths(sn.space)
    return [sample(np.random.default_rng([seed, t])) for t in range(DRAWS)]


def _single_op_slots(sn: SuperNet, m: int) -> list[int]:
    """Slots with exactly one weight-changing decision, and it has m options."""
    neutral = weight_neutral_decisions(sn.space)
    out = []
    for si, slot in enumerate(sn.slots):
        ops = [d for d in slot.decisions if d not in neutral]
        if len(ops) == 1 and sn.space.num_options[ops[0]] == m:
            out.append(si)
    return out


@pytest.mark.parametrize("name", SPACES)
def test_msgdas_subgraphs_share_no_module_under_separate_and_do_under_entangled(name):
    sep, ent = _supernet(name, "separate"), _supernet(name, "entangled")
    draws = _msgdas_draws(sep)
    for paths in draws:
        assert (paths[0] != paths[1]).all()  # exclusive at the option level, every decision
        assert shared_modules(sep, paths) == 0
        assert max(module_uses(sep, paths).values()) == 1  # no weight updated twice in the step
    assert sum(shared_modules(ent, paths) for paths in draws) > 0  # the guard is needed


@pytest.mark.parametrize("name", ["spos-shufflenet", *SPACES])
def test_fair_step_trains_every_candidate_once_under_separate_not_under_entangled(name):
    sep, ent = _supernet(name, "separate"), _supernet(name, "entangled")
    m = max(sep.space.num_options)
    full = _single_op_slots(sep, m)  # slots where FairNAS's "exactly once" applies as stated
    steps = _fair_steps(sep)
    for paths in steps:
        assert len(paths) == m
        assert shared_modules(sep, paths) == 0
        uses = module_uses(sep, paths)
        if name in ("spos-shufflenet", "ofa-mbv3"):  # every decision has m options: no module twice
            assert max(uses.values()) == 1
        for si in full:
            modules = {s.candidate for s in sep.slot_steps(si).values() if s is not None and s.candidate}
            assert {c: uses[c] for c in modules} == {c: 1 for c in modules}, sep.slots[si].name
    assert full or name == "ofa-mbv3"  # ofa-mbv3: kernel x expansion per layer, all at m = 3 options
    assert sum(shared_modules(ent, paths) for paths in steps) > 0
    assert any(max(module_uses(ent, paths).values()) > 1 for paths in steps)


def test_paths_with_the_same_options_are_not_counted_as_sharing():
    sn = _supernet("mobilenetv2", "entangled")
    path = np.zeros((2, len(sn.space.decisions)), dtype=np.int64)
    assert shared_modules(sn, path) == 0 and max(module_uses(sn, path).values()) == 2


# ---- the CLI refuses the combinations (exit 2, one sentence, nothing written) ----------------------

def _refused(tables, tmp_path, *args: str, sharing: str = "entangled") -> str:
    out = tmp_path / "run"
    r = run_cli("search", "--space", "mobilenetv2", "--table", str(tables["mobilenetv2"]), "--latency-ms", "0.3",
                "--data-limit", "32", "--epochs", "1", "--weight-sharing", sharing, "--out", str(out), *args)
    assert r.returncode == 2, r.stderr
    assert not out.exists()
    return r.stderr


def test_cli_refuses_msgdas_k2_with_entangled_sharing(tables, tmp_path):
    err = _refused(tables, tmp_path, "--strategy", "msgdas", "--msgdas-k", "2")
    assert ("--msgdas-k 2 needs --weight-sharing separate: with entangled sharing the K sub-graphs share "
            "candidate modules, so they are not mutually exclusive (MSG-DAS, Sec. 3.1, Eq. 2).") in err


@pytest.mark.parametrize("strategy", ["spos-evolution", "random"])
def test_cli_refuses_fair_sampling_with_entangled_sharing(tables, tmp_path, strategy):
    err = _refused(tables, tmp_path, "--strategy", strategy, "--sampling", "fair")
    assert "--sampling fair needs --weight-sharing separate" in err
    assert "every candidate exactly once (FairNAS strict fairness, Chu et al. 2021, Sec. 3.2, Fig. 2)." in err


def test_guards_let_gdas_and_uniform_sampling_through():
    from hwnas.cli.main import build_parser
    from hwnas.search import load_strategies

    parser, strategies = build_parser(), load_strategies()
    base = ["search", "--space", "mobilenetv2", "--table", "t.json", "--latency-ms", "1", "--out", "o",
            "--weight-sharing", "entangled"]
    for extra in (["--strategy", "msgdas", "--msgdas-k", "1"], ["--strategy", "spos-evolution"]):
        args = parser.parse_args(base + extra)
        strategies[args.strategy].from_args(args)  # no InputError


@pytest.mark.parametrize("strategy,flags,warmup", [
    ("proxyless", ["--shared-epochs", "2"], "--proxyless-warmup-epochs"),
    ("msgdas", ["--sandwich"], "--msgdas-warmup-epochs"),
    ("proxyless", ["--warmup-epochs", "1"], "--proxyless-warmup-epochs"),
    ("msgdas", ["--candidate-init", "aligned"], "--msgdas-warmup-epochs"),
])
def test_dnas_strategies_refuse_uniform_path_training_flags(tables, tmp_path, strategy, flags, warmup):
    # these flags act in train_supernet only; ProxylessNAS and MSG-DAS train their weights in dnas.alternate
    err = _refused(tables, tmp_path, "--strategy", strategy, *flags, sharing="separate")
    assert f"{flags[0]} applies to uniform-path supernet training" in err
    assert f"not to --strategy {strategy}" in err and warmup in err
