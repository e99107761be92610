"""What makes a supernet learn in short runs (issue 16, item 2): aligned candidate initialization,
learning-rate warm-up, the sandwich rule and in-place distillation, with hand-checkable numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwnas.space.loader import load_space
from hwnas.supernet.samplers import block_size, extreme_paths, sandwich, uniform_paths
from hwnas.supernet.supernet import SuperNet
from hwnas.supernet.weight_copy import slice_tensor as _slice
from hwnas.supernet.training import SupernetTrainConfig, distill_loss, step_rng, train_supernet
from hwnas.train import cosine_lr
from hwnas.train.data import load_dataset
from hwnas.train.runs import RunDir


def _supernet(name: str, **kw) -> SuperNet:
    torch.manual_seed(0)
    return SuperNet(load_space(name), resolution=32, width_mult=0.25, num_classes=10, **kw)


def _named(module) -> dict[str, torch.Tensor]:
    out = dict(module.named_parameters())
    out.update(module.named_buffers())
    return out


# ---- warm-up (Goyal et al. 2017, Sec. 2.2) -------------------------------------------------------

def test_warmup_then_cosine_values():
    lrs = [cosine_lr(0.05, s, 10, warmup_steps=4) for s in range(10)]
    assert lrs[:4] == pytest.approx([0.0125, 0.025, 0.0375, 0.05])
    # then cosine over the 6 remaining steps: 0.025 * (1 + cos(pi * t / 6))
    assert lrs[4] == pytest.approx(0.05)
    assert lrs[5] == pytest.approx(0.025 * (1 + math.cos(math.pi / 6)))  # 0.046651
    assert lrs[7] == pytest.approx(0.025)
    assert lrs[9] == pytest.approx(0.025 * (1 + math.cos(5 * math.pi / 6)))  # 0.003349


def test_config_rejects_bad_options():
    with pytest.raises(ValueError, match="candidate_init"):
        SupernetTrainConfig(candidate_init="copied")
    with pytest.raises(ValueError, match="warmup_epochs"):
        SupernetTrainConfig(warmup_epochs=-1)


# ---- aligned candidates ----------------------------------------------------------------------------

def test_aligned_candidates_are_slices_of_the_largest():
    sn = _supernet("mobilenetv2", init="aligned")
    big, small = sn.candidates["s2_o5"], sn.candidates["s2_o0"]  # slot s1.0 (s1_l1): e6_k7 and e3_k3
    wb, ws = _named(big), _named(small)
    dw = "body.1.0.weight"  # depthwise conv: mid x 1 x k x k
    assert wb[dw].shape[2:] == (7, 7) and ws[dw].shape[2:] == (3, 3)
    assert torch.equal(ws[dw], wb[dw][: ws[dw].shape[0], :, 2:5, 2:5])  # leading channels, centre 3x3
    for name, t in ws.items():
        assert torch.equal(t, _slice(wb[name], t.shape)), name


def test_independent_candidates_differ():
    sn = _supernet("mobilenetv2")
    assert sn.init == "independent"
    big, small = _named(sn.candidates["s2_o5"]), _named(sn.candidates["s2_o0"])
    w = "body.0.0.weight"  # expand 1x1
    assert not torch.equal(small[w], _slice(big[w], small[w].shape))


def test_aligned_candidates_without_se_take_the_layers_outside_se():
    sn = _supernet("mnasnet", init="aligned")
    sp = sn.space
    arch = sp.preset("mnasnet_b1", resolution=32, width_mult=0.25, num_classes=10)
    mb = {**arch["choices"], "b2_op": "mb6", "b2_kernel": 5, "b2_width": 1.25}
    with_se = sn.path(sp.make_arch({**mb, "b2_se": 0.25}, resolution=32, width_mult=0.25, num_classes=10))
    no_se = sn.path(sp.make_arch({**mb, "b2_se": 0}, resolution=32, width_mult=0.25, num_classes=10))
    a, b = sn.candidates[no_se[2].candidate], sn.candidates[with_se[2].candidate]  # b2.0
    assert a is not b
    wa, wb = _named(a), _named(b)
    # with SE: body.0 expand, body.1 depthwise, body.2 SE, body.3 project; without: body.2 project
    assert torch.equal(wa["body.2.0.weight"], wb["body.3.0.weight"])
    assert torch.equal(wa["body.1.0.weight"], wb["body.1.0.weight"])


def test_aligned_init_keeps_extraction_exact():
    sn = _supernet("mnasnet", init="aligned").eval()
    rng = np.random.default_rng(0)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(3):
        arch = sn.space.sample(rng, resolution=32, width_mult=0.25, num_classes=10)
        with torch.no_grad():
            assert torch.equal(sn(x, arch), sn.extract(arch).eval()(x))


def test_train_supernet_aligns_a_fresh_run_only(tmp_path):
    ds = load_dataset("digits", seed=0, limit=64)
    sn = _supernet("mobilenetv2")
    cfg = SupernetTrainConfig(epochs=1, batch_size=32, candidate_init="aligned", checkpoint_every=1)
    sampler = uniform_paths(sn.space)
    run = RunDir(tmp_path / "a", config={}, resume=False)
    train_supernet(sn, ds, sampler, config=cfg, seed=0, run=run)
    assert sn.init == "aligned"
    state = run.load_checkpoint()
    again = _supernet("mobilenetv2")
    cfg2 = SupernetTrainConfig(epochs=2, batch_size=32, candidate_init="aligned", checkpoint_every=1)
    train_supernet(again, ds, sampler, config=cfg2, seed=0, run=RunDir(tmp_path / "a", config={}, resume=True),
                   state=state)
    assert again.init == "independent"  # resumed weights are kept, not re-initialized


# ---- sandwich rule and in-place distillation (BigNAS, Yu et al. 2020, Sec. 3.1) ---------------------

def test_sandwich_paths_of_mobilenetv2():
    sn = _supernet("mobilenetv2")
    sp = sn.space
    largest, smallest = extreme_paths(sn)
    big = sp.decode(largest, resolution=32, num_classes=10)["choices"]
    small = sp.decode(smallest, resolution=32, num_classes=10)["choices"]
    assert set(big.values()) == {"e6_k7"}
    assert {k: v for k, v in small.items() if k.endswith("_l1")} == {f"s{i}_l1": "e3_k3" for i in range(1, 7)}
    assert {v for k, v in small.items() if not k.endswith("_l1")} == {"skip"}
    rows = sandwich(uniform_paths(sp), largest, smallest)(step_rng(0, 3))
    assert rows.shape == (3, len(sp.decisions))
    assert (rows[0] == largest).all() and (rows[1] == smallest).all()
    assert (rows[2] == uniform_paths(sp)(step_rng(0, 3))[0]).all()


def test_block_size_counts_weights():
    sp = load_space("mobilenetv2")
    arch = sp.preset("mobilenet_v2", resolution=32, num_classes=10)
    blocks = {b.slot: b for b in sp.resolve(arch)}
    b = blocks["s1.0"]  # 16 -> 24, expand 6 (mid 96), 3x3
    assert (b.cin, b.mid, b.cout, b.kernel) == (16, 96, 24, 3)
    assert block_size(b) == 16 * 96 + 96 * 9 + 96 * 24


def test_distill_loss_is_cross_entropy_to_the_teacher():
    zeros = torch.zeros(4, 2)
    assert float(distill_loss(zeros, zeros)) == pytest.approx(math.log(2))
    teacher = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    student = torch.tensor([[0.0, 0.0]])  # q = (1/2, 1/2)
    assert float(distill_loss(student, teacher)) == pytest.approx(math.log(2))
    student = torch.tensor([[math.log(3.0), 0.0]])  # q = (3/4, 1/4)
    want = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert float(distill_loss(student, teacher)) == pytest.approx(want)
    s = student.clone().requires_grad_()
    t = teacher.clone().requires_grad_()
    distill_loss(s, t).backward()
    assert t.grad is None  # gradients stop at the teacher


def test_sandwich_history_counts_the_sampled_paths(tmp_path):
    ds = load_dataset("digits", seed=0, limit=64)
    sn = _supernet("mobilenetv2")
    run = RunDir(tmp_path / "s", config={}, resume=False)
    cfg = SupernetTrainConfig(epochs=1, batch_size=32, sandwich=True)
    train_supernet(sn, ds, uniform_paths(sn.space), config=cfg, seed=0, run=run)
    (h,) = run.history()
    assert h["step"] == 2 and 0.0 <= h["train_acc"] <= 1.0  # 64 images, batches of 32


# ---- shared phase, then split (Few-shot NAS, Zhao et al. 2021) -------------------------------------

def test_shared_epochs_split_entangled_weights_into_candidates(tmp_path):
    ds = load_dataset("digits", seed=0, limit=64)
    sn = _supernet("mobilenetv2")
    run = RunDir(tmp_path / "f", config={}, resume=False)
    cfg = SupernetTrainConfig(epochs=2, batch_size=32, shared_epochs=2)  # 4 steps, all shared
    before = _named(sn.candidates["s2_o0"])["body.0.0.weight"].clone()
    train_supernet(sn, ds, uniform_paths(sn.space), config=cfg, seed=0, run=run)
    big, small = _named(sn.candidates["s2_o5"]), _named(sn.candidates["s2_o0"])
    for name, t in small.items():  # both inherited from the one entangled module of slot s1.0
        assert torch.equal(t, _slice(big[name], t.shape)), name
    assert not torch.equal(small["body.0.0.weight"], before)
    state = run.load_checkpoint()
    assert "shared_supernet" not in state  # the last checkpoint holds the split supernet
    assert torch.equal(state["supernet"]["candidates.s2_o0.body.0.0.weight"], small["body.0.0.weight"])


def test_shared_epochs_ignored_for_entangled(tmp_path):
    ds = load_dataset("digits", seed=0, limit=64)
    a, b = _supernet("mobilenetv2", sharing="entangled"), _supernet("mobilenetv2", sharing="entangled")
    sampler = uniform_paths(a.space)
    train_supernet(a, ds, sampler, config=SupernetTrainConfig(epochs=1, batch_size=32), seed=0,
                   run=RunDir(tmp_path / "a", config={}, resume=False))
    train_supernet(b, ds, sampler, config=SupernetTrainConfig(epochs=1, batch_size=32, shared_epochs=1), seed=0,
                   run=RunDir(tmp_path / "b", config={}, resume=False))
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
