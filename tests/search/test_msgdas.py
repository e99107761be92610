"""MSG-DAS pieces: DropBlock-identity and its schedule, the supernet's identity hook, K exclusive
sub-graphs per step (K = 1 is GDAS), the gradient-stopped super-net guidance, the schedules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hwnas.errors import InputError
from hwnas.search.dnas import ArchParams
from hwnas.search.strategies.msgdas import (Msgdas, MsgdasConfig, guidance_probs, sample_subgraphs,
                                            subgraph_losses, subgraph_weights)
from hwnas.space.loader import load_space
from hwnas.supernet.dropblock import DropBlockSchedule, drop_block, dropblock_mask
from hwnas.supernet.supernet import SuperNet
from hwnas.train.loop import classification_loss
from tests.conftest import TOY_SPACE

# ---- DropBlock-identity ----------------------------------------------------------------------------


def test_dropblock_ratio_is_zero_first_then_rises_stepwise_to_the_maximum():
    s = DropBlockSchedule(max_ratio=0.2, steps=4)
    # 100 steps cut into 5 phases of 20: 0, 0.05, 0.1, 0.15, 0.2
    got = [s.ratio(i, 100) for i in (0, 19, 20, 39, 40, 60, 79, 80, 99)]
    assert got == pytest.approx([0.0, 0.0, 0.05, 0.05, 0.1, 0.15, 0.15, 0.2, 0.2])
    ratios = [s.ratio(i, 100) for i in range(100)]
    assert ratios == sorted(ratios) and len(set(ratios)) == 5
    assert DropBlockSchedule(max_ratio=0.1, steps=1).ratio(49, 100) == 0.0
    assert DropBlockSchedule(max_ratio=0.1, steps=1).ratio(50, 100) == pytest.approx(0.1)
    with pytest.raises(InputError, match="--msgdas-dropblock-max"):
        DropBlockSchedule(max_ratio=1.0)
    with pytest.raises(InputError, match="--msgdas-dropblock-steps"):
        DropBlockSchedule(steps=0)


def test_dropblock_mask_drops_whole_blocks_at_the_target_rate():
    b = 3
    mask = dropblock_mask((8, 16, 24, 24), drop_prob=0.1, block_size=b, generator=torch.Generator().manual_seed(0))
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert abs(float(1 - mask.mean()) - 0.1) < 0.015  # ~110k positions; overlaps make it slightly lower
    # every dropped position lies in an all-zero b x b window that fits inside the map
    full_zero = (F.max_pool2d(mask, b, stride=1) == 0).float()  # N, C, 22, 22: window with corner here is all zero
    covered = F.max_pool2d(F.pad(full_zero, (b - 1,) * 4), b, stride=1)  # N, C, 24, 24
    assert torch.equal(covered, 1 - mask)


def test_drop_block_is_eq4_without_rescaling_and_off_at_ratio_zero():
    x = torch.ones(2, 4, 6, 6)
    assert drop_block(x, drop_prob=0.0, block_size=3) is x
    y = drop_block(x, drop_prob=0.3, block_size=3, generator=torch.Generator().manual_seed(1))
    assert set(y.unique().tolist()) == {0.0, 1.0}  # x · m̃, kept values not scaled by 1 / keep
    tiny = drop_block(torch.ones(64, 8, 1, 1), drop_prob=0.25, block_size=3,
                      generator=torch.Generator().manual_seed(2))  # 1x1 maps: the block shrinks to 1
    assert 0.15 < float(1 - tiny.mean()) < 0.35


# ---- the supernet's identity hook --------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    sp = load_space(TOY_SPACE)
    torch.manual_seed(0)
    return sp, SuperNet(sp, resolution=8, width_mult=1.0, num_classes=4).train()


def _onehot(sp, idx):
    return [F.one_hot(torch.tensor(i), n).float() for i, n in zip(idx, sp.num_options)]


def test_identity_fn_runs_on_skip_steps_only(toy):
    sp, sn = toy
    x = torch.randn(4, 3, 8, 8)
    calls = []

    def mark(t):
        calls.append(tuple(t.shape))
        return t

    for idx, skips in (([0, 1, 2], 2), ([1, 0, 0], 0), ([0, 1, 0], 1)):
        calls.clear()
        out = sn.weighted_forward(x, _onehot(sp, idx), identity_fn=mark)
        assert len(calls) == skips
        assert torch.allclose(out, sn(x, idx), atol=1e-6)
    zeroed = sn.weighted_forward(x, _onehot(sp, [0, 1, 0]), identity_fn=torch.zeros_like)
    assert not torch.allclose(zeroed, sn(x, [0, 1, 0]))


def test_identity_fn_runs_on_depth_cut_layers():
    sp = load_space("ofa-mbv3")
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10).train()
    depth = [i for i, d in enumerate(sp.decisions) if d.name.endswith("depth")]
    assert depth, "ofa-mbv3 has depth decisions"
    idx = [0] * len(sp.decisions)  # option 0 of each depth decision: the shallowest stage
    calls = []
    sn.weighted_forward(torch.randn(2, 3, 32, 32), _onehot(sp, idx), identity_fn=lambda t: calls.append(1) or t)
    cut = sum(1 for slot, plan in zip(sn.slots, [sn.slot_steps(i) for i in range(len(sn.slots))])
              if slot.decisions and plan[tuple(idx[d] for d in slot.decisions)] is None)
    assert cut > 0 and len(calls) == cut


# ---- sub-graphs --------------------------------------------------------------------------------------


def test_k1_sampling_is_gdas_per_decision():
    alphas = [torch.randn(5, requires_grad=True) for _ in range(3)]
    torch.manual_seed(4)
    rows = sample_subgraphs(alphas, 1, 2.5)
    torch.manual_seed(4)
    ref = F.gumbel_softmax(torch.stack(alphas), tau=2.5, hard=True)  # GDAS: hard Gumbel-softmax
    assert all(torch.equal(r[0], ref[d]) for d, r in enumerate(rows))


def test_k_subgraphs_are_exclusive_share_stem_and_head_and_sum_their_losses(toy):
    sp, sn = toy
    arch = ArchParams(sp.num_options)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    rows = sample_subgraphs(list(arch.alphas), 2, 1.0, generator=torch.Generator().manual_seed(0))
    choices = [[int(r[i].argmax()) for r in rows] for i in range(2)]
    assert all(a != b for a, b in zip(*choices))  # no decision runs the same option twice
    runs: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: runs.__setitem__(name, runs.get(name, 0) + 1))
             for name, m in sn.candidates.items()]
    try:
        losses, _ = subgraph_losses(sn, x, y, rows, soft=None, lam=0.0, identity_fn=None)
    finally:
        for h in hooks:
            h.remove()
    fixed = {sn.slot_steps(i)[()].candidate for i, slot in enumerate(sn.slots) if not slot.decisions}
    searched = [s.candidate for c in choices for s in sn.path(c) if s.candidate and s.candidate not in fixed]
    assert fixed and all(runs[n] == 2 for n in fixed)  # stem and head: shared, run once per sub-graph
    assert len(searched) == len(set(searched)) and all(runs[n] == 1 for n in searched)  # exclusive
    assert set(runs) == fixed | set(searched)  # nothing else computed
    assert len(losses) == 2
    for i, loss in enumerate(losses):  # each loss is its single path's cross-entropy on the same batch
        single = classification_loss(sn(x, choices[i]), y)
        assert float(loss.detach()) == pytest.approx(float(single.detach()), rel=1e-5)
    torch.stack(losses).sum().backward()
    assert all(a.grad is not None and torch.count_nonzero(a.grad) == a.numel() for a in arch.alphas)


def test_k1_step_runs_one_candidate_per_decision_and_matches_the_single_path(toy):
    sp, sn = toy
    arch = ArchParams(sp.num_options)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    rows = sample_subgraphs(list(arch.alphas), 1, 10.0, generator=torch.Generator().manual_seed(3))
    weights, compute = subgraph_weights(rows, 0)
    assert all(len(c) == 1 for c in compute)
    (loss,), _ = subgraph_losses(sn, x, y, rows, soft=None, lam=0.0, identity_fn=None)
    path = [c[0] for c in compute]
    assert float(loss.detach()) == pytest.approx(float(classification_loss(sn(x, path), y).detach()), rel=1e-5)


def test_guidance_pass_builds_no_autograd_graph(toy):
    sp, sn = toy
    arch = ArchParams(sp.num_options)
    with torch.no_grad():
        arch.alphas[2].copy_(torch.tensor([1.0, 0.0, -1.0]))
    x = torch.randn(4, 3, 8, 8)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        soft = guidance_probs(sn, arch, x)
        assert saved == []  # nothing kept for backward
        sub = sn.weighted_forward(x, _onehot(sp, [0, 0, 0]))
        assert len(saved) > 0  # control: a sub-graph forward with grad does keep activations
    assert soft.grad_fn is None and not soft.requires_grad
    assert sub.grad_fn is not None
    assert torch.allclose(soft.sum(1), torch.ones(4))
    # against the DARTS mixture computed here: softmax(α) by hand, then slot by slot
    # h ← Σ_o p_o · block_o(h) with each block_o taken from the standalone extracted path that uses o
    e = torch.exp(torch.tensor(1.0))
    probs = [torch.full((n,), 1.0 / n) for n in sp.num_options]  # α = 0: uniform
    probs[2] = torch.stack([e, torch.tensor(1.0), 1 / e]) / (e + 1 + 1 / e)  # α = (1, 0, -1)
    assert [len(slot.decisions) for slot in sn.slots] == [0, 1, 1, 1, 0]  # stem, l1, l2, l3, classifier

    def block_of(idx, slot):
        model = sn.extract(idx)
        return next(m for m, b in zip(model.blocks, model.specs) if b.slot == slot.name)

    h = x
    with torch.no_grad():
        for slot in sn.slots:
            if not slot.decisions:
                h = block_of([0, 0, 0], slot)(h)
                continue
            (d,) = slot.decisions
            mixed = torch.zeros(())
            for o in range(sp.num_options[d]):
                idx = [0, 0, 0]
                idx[d] = o
                mixed = mixed + probs[d][o] * block_of(idx, slot)(h)  # skip options: nn.Identity
            h = mixed
        expected = torch.softmax(h, 1)
    assert torch.allclose(soft, expected, atol=1e-6)
    single = torch.softmax(sn(x, [0, 0, 0]), 1).detach()
    assert not torch.allclose(soft, single, atol=1e-3)  # a mixture, not the first path


def test_guidance_term_is_eq7_cross_entropy_with_the_soft_labels(toy):
    sp, sn = toy
    arch = ArchParams(sp.num_options)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    rows = sample_subgraphs(list(arch.alphas), 1, 1.0, generator=torch.Generator().manual_seed(9))
    soft = torch.full((8, 4), 0.25)
    (plain,), _ = subgraph_losses(sn, x, y, rows, soft=None, lam=0.0, identity_fn=None)
    (guided,), _ = subgraph_losses(sn, x, y, rows, soft=soft, lam=0.5, identity_fn=None)
    logits = sn(x, [int(r[0].argmax()) for r in rows])
    ce_soft = float(-(0.25 * F.log_softmax(logits, 1)).sum(1).mean().detach())
    assert float(guided.detach()) == pytest.approx(float(plain.detach()) + 0.5 * ce_soft, rel=1e-5)


# ---- schedules and settings ------------------------------------------------------------------------


def test_tau_and_guidance_schedules_are_linear():
    c = MsgdasConfig(tau_start=10.0, tau_end=1.0, lambda_max=0.02)
    assert [c.tau(s, 10) for s in (0, 3, 9)] == pytest.approx([10.0, 7.0, 1.0])
    assert [c.guidance_weight(s, 10) for s in (0, 3, 9)] == pytest.approx([0.0, 0.02 / 3, 0.02])
    d = MsgdasConfig()
    assert (d.k, d.tau_start, d.tau_end, d.arch_lr, d.arch_betas, d.arch_weight_decay, d.weight_decay) == \
        (2, 10.0, 1.0, None, (0.5, 0.999), 1e-4, 3e-4)  # Sec. 4.2; arch_lr None: max(3e-4, 3 / arch steps)
    from hwnas.search.strategies.msgdas import PAPER_ARCH_LR
    assert PAPER_ARCH_LR == 3e-4


def test_k_larger_than_a_decision_and_unmixable_spaces_are_input_errors():
    with pytest.raises(InputError, match="--msgdas-k 5 exceeds the 4 options"):
        Msgdas(config=MsgdasConfig(k=5)).check_space(load_space("spos-shufflenet"))
    Msgdas(config=MsgdasConfig(k=4)).check_space(load_space("spos-shufflenet"))
    with pytest.raises(InputError, match="--msgdas-lambda 0"):
        Msgdas(config=MsgdasConfig(k=2)).check_space(load_space("mnasnet"))
    Msgdas(config=MsgdasConfig(k=2, lambda_max=0.0)).check_space(load_space("mnasnet"))
    with pytest.raises(InputError, match="--msgdas-latency-loss"):
        MsgdasConfig(latency_loss="log")


def test_a_single_option_decision_is_that_option_in_every_subgraph():
    Msgdas(config=MsgdasConfig(k=2)).check_space(load_space("darts"))  # node 2's one input pair "0,1"
    rows = sample_subgraphs([torch.zeros(1), torch.zeros(3)], 2, 1.0, generator=torch.Generator().manual_seed(0))
    assert rows[0].tolist() == [[1.0], [1.0]]
    assert rows[1].sum(0).tolist().count(1.0) == 2 and rows[1].sum().item() == 2.0  # exclusive where it can be


def test_the_additive_latency_term_is_counted_once_for_k_subgraphs():
    from hwnas.search.objective import proxyless_add_loss
    from hwnas.search.strategies.msgdas import arch_loss

    term = lambda loss, e: proxyless_add_loss(loss, e, 2.0, lam=0.5)  # noqa: E731  L + 0.5·E/2
    losses = [torch.tensor(1.0), torch.tensor(2.0)]
    # (1 + 2) + 0.5·4/2 = 4, not (1 + 1) + (2 + 1) = 5
    assert float(arch_loss(losses, torch.tensor(4.0), term)) == pytest.approx(4.0)


def test_the_gdas_preset_is_gdas_and_refuses_to_change_what_it_fixes():
    import argparse

    from hwnas.search.strategies.msgdas import GDAS_PRESET, Gdas, is_gdas

    p = argparse.ArgumentParser()
    Msgdas.add_arguments(p)
    p.add_argument("--space", default="mobilenetv2")
    cfg = Gdas.from_args(p.parse_args([])).config
    assert (cfg.k, cfg.lambda_max, cfg.dropblock.max_ratio, cfg.tau_start, cfg.tau_end, cfg.arch_weight_decay) == (
        1, 0.0, 0.0, 10.0, 0.1, 1e-3)
    assert is_gdas(cfg) and set(GDAS_PRESET) == {"k", "lambda_max", "dropblock", "tau_start", "tau_end",
                                                  "arch_weight_decay"}
    assert not is_gdas(MsgdasConfig(k=1))  # K = 1 alone keeps MSG-DAS's DropBlock, guidance and tau
    with pytest.raises(InputError, match="--strategy gdas fixes --msgdas-k"):
        Gdas.from_args(p.parse_args(["--msgdas-k", "3"]))
