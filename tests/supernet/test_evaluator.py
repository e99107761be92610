"""``SupernetEvaluator.score`` computes exactly the straightforward reference (issue 16).

The reference is the computation before the speed-up: a ``PathModel`` over the whole supernet, BN
statistics reset and recalibrated on the training batches (SPOS, Guo et al. 2020, Sec. 3.4), then
``evaluate`` on the architecture split. Scores, the recalibrated BN statistics of the path and the
global random state afterwards must be identical, not merely close.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.space.loader import load_space
from hwnas.supernet.evaluator import _BN_EPOCH, SupernetEvaluator
from hwnas.supernet.supernet import PathModel, SuperNet
from hwnas.train import batches, evaluate, recalibrate_bn
from hwnas.train.data import load_dataset


@pytest.fixture(scope="module")
def ds():
    return load_dataset("digits", seed=0, limit=96)


def _reference(sn: SuperNet, ds, idx, *, bn_batches: int, batch_size: int, seed: int) -> float:
    model = PathModel(sn, idx)
    res = sn.resolution
    recalibrate_bn(model, batches(ds.train, ds, batch_size=batch_size, resolution=res, seed=seed, epoch=_BN_EPOCH),
                   num_batches=bn_batches)
    return evaluate(model, ds.arch, ds, resolution=res, batch_size=256).accuracy


def _path_buffers(sn: SuperNet, idx) -> dict[str, torch.Tensor]:
    out = {}
    for name in dict.fromkeys(sn.path_candidates(idx)):
        for k, v in sn.candidates[name].named_buffers():
            out[f"{name}.{k}"] = v.clone()
    return out


@pytest.mark.parametrize("name,sharing", [("mobilenetv2", "separate"), ("mnasnet", "separate"),
                                          ("proxyless", "entangled")])
def test_score_equals_reference_computation(ds, name, sharing):
    sp = load_space(name)
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=ds.num_classes, sharing=sharing)
    sn.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(1)
    paths = [np.array([int(rng.integers(k)) for k in sp.num_options]) for _ in range(3)]
    ev = SupernetEvaluator(sn, ds, bn_batches=2, batch_size=32, seed=4)
    uncached = SupernetEvaluator(sn, ds, bn_batches=2, batch_size=32, seed=4, cache_bytes=0)
    for idx in paths:
        torch.manual_seed(7)
        want = _reference(sn, ds, idx, bn_batches=2, batch_size=32, seed=4)
        want_bn, want_rng = _path_buffers(sn, idx), torch.get_rng_state()
        for evaluator in (ev, uncached):
            torch.manual_seed(7)
            got = evaluator.score(idx)
            assert got == want  # identical, not approximately
            assert torch.equal(torch.get_rng_state(), want_rng)  # classifier dropout drew the same numbers
            got_bn = _path_buffers(sn, idx)
            assert got_bn.keys() == want_bn.keys()
            assert all(torch.equal(got_bn[k], want_bn[k]) for k in want_bn), name
        assert ev.score(idx) == want  # the cache returns the same value
    assert ev._inputs is not None and uncached._inputs is None
    assert ev.bn_images == 64


def test_score_touches_only_the_path_modules(ds):
    sp = load_space("mobilenetv2")
    sn = SuperNet(sp, resolution=32, width_mult=0.25, num_classes=ds.num_classes)
    idx = np.zeros(len(sp.num_options), dtype=np.int64)
    used = set(sn.path_candidates(idx))
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    SupernetEvaluator(sn, ds, bn_batches=1, batch_size=32).score(idx)
    after = sn.state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= used
