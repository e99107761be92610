"""The alternating weight / architecture loop shared by gradient strategies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.search.dnas import AlternatingConfig, ArchParams, alternate
from hwnas.space.loader import load_space
from hwnas.supernet.supernet import SuperNet
from hwnas.train.data import load_dataset
from hwnas.train.loop import classification_loss
from hwnas.train.runs import RunDir


def test_alternate_moves_alpha_and_logs_probs(tmp_path):
    sp = load_space("proxyless")
    ds = load_dataset("digits", limit=128)
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=10).to(memory_format=torch.channels_last)
    arch = ArchParams(sp.num_options)
    run = RunDir(tmp_path / "r", config={}, resume=False)
    calls = {"w": 0, "a": 0}

    def weight_step(x, y, rng, step):
        path = np.array([rng.integers(n) for n in sp.num_options])
        loss = classification_loss(sn(x, path), y)
        loss.backward()
        calls["w"] += 1
        return {"loss": float(loss.detach())}

    def arch_step(x, y, rng, step):
        probs = arch.probs()
        loss = classification_loss(sn.weighted_forward(x, probs), y)
        loss.backward()
        calls["a"] += 1
        return {"loss": float(loss.detach())}

    cfg = AlternatingConfig(epochs=2, batch_size=64, a_lr=0.05, warmup_epochs=1)
    alternate(supernet=sn, arch=arch, ds=ds, config=cfg, seed=0, run=run, phase="toy",
              weight_step=weight_step, arch_step=arch_step)
    assert calls == {"w": 4, "a": 2}  # 2 steps per epoch; arch steps only after the warm-up epoch
    hist = run.history()
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(abs(sum(p) - 1) < 1e-4 for p in hist[-1]["probs"])
    assert hist[0]["probs"][0] == [round(1 / 6, 6)] * 6  # α untouched during warm-up
    assert any(abs(v - 1 / 6) > 1e-4 for v in hist[1]["probs"][0])
    assert len(hist[-1]["derived"]) == len(sp.decisions)
    assert run.load_checkpoint()["dnas"]["step"] == 4


def test_auto_arch_lr_lets_alpha_travel_three_logits_and_never_undercuts_the_paper():
    from hwnas.search.dnas import ARCH_TRAVEL, auto_arch_lr

    assert ARCH_TRAVEL == 3.0
    assert auto_arch_lr(1e-3, arch_steps=36) == pytest.approx(3 / 36)  # a CPU run: 0.0833
    assert auto_arch_lr(1e-3, arch_steps=100_000) == 1e-3  # an ImageNet-sized run keeps the paper's rate
    assert auto_arch_lr(3e-4, arch_steps=0) == 3.0  # no step: guarded, not a division by zero


def test_arch_step_count_is_weight_steps_after_warmup():
    from types import SimpleNamespace

    from hwnas.search.dnas import arch_step_count

    ds = SimpleNamespace(train=list(range(130)))  # 130 examples, batch 32, drop_last → 4 steps per epoch
    assert arch_step_count(ds, epochs=5, warmup_epochs=1, batch_size=32) == 16
    assert arch_step_count(ds, epochs=2, warmup_epochs=3, batch_size=32) == 0
