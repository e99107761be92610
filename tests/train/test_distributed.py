"""Data-parallel pieces: batch shares, the one-process service, and two gloo processes on this CPU
(``torch.multiprocessing``): supernet training and DARTS's second-order step equal one process with
the global batch, and the parameters stay bit-identical across processes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from hwnas.errors import InputError
from hwnas.search.dnas import AlternatingConfig, ArchParams, alternate
from hwnas.search.strategies.darts import unrolled_gradient
from hwnas.space import load_space
from hwnas.supernet import SuperNet, SupernetTrainConfig, train_supernet, uniform_paths
from hwnas.train import (SINGLE_PROCESS, Distributed, RunDir, batches, classification_loss, init_distributed,
                         load_dataset)
from hwnas.train.cross_rank_bn import CrossRankBatchNorm2d, batch_norm_across_ranks
from hwnas.train.data import epoch_order
from tests.conftest import TOY_SPACE

GLOBAL_BATCH = 16


def test_shares_of_a_batch_are_distributed_samplers_batches_and_make_the_whole_batch():
    ds = load_dataset("digits", limit=40)
    whole = list(batches(ds.train, ds, batch_size=8, resolution=8, seed=3, epoch=1, drop_last=True))
    order = epoch_order(len(ds.train), seed=3, epoch=1)
    for r in range(2):
        mine = list(batches(ds.train, ds, batch_size=8, resolution=8, seed=3, epoch=1, drop_last=True, part=(r, 2)))
        assert len(mine) == len(whole) == 5
        # DistributedSampler over the epoch's order (no shuffle of its own), per-process batches of 4
        picks = [int(order[i]) for i in DistributedSampler(range(40), num_replicas=2, rank=r, shuffle=False)]
        for step, ((x, y), (xw, yw)) in enumerate(zip(mine, whole)):
            assert torch.equal(y, yw[r::2]) and torch.equal(x, xw[r::2])  # examples r, r+2, ... of the batch
            assert torch.equal(y, ds.train.labels[picks[4 * step:4 * step + 4]])


def test_one_process_is_the_identity():
    d = SINGLE_PROCESS
    assert d.is_main and d.part == (0, 1) and d.seed(41) == 41 and d.shard([1, 2, 3]) == [1, 2, 3]
    assert d.sum_floats([1, 2.5]) == [1.0, 2.5] and d.map(lambda v: v * 2, [1, 2]) == [2, 4]
    assert d.agree(lambda: 7) == 7 and d.broadcast("x") == "x"
    g = torch.ones(3)
    d.average_([g, None])
    assert torch.equal(g, torch.ones(3))
    two = Distributed(rank=1, world_size=2, backend="gloo")
    assert two.shard([0, 1, 2, 3, 4]) == [1, 3] and two.seed(41) == 83 and not two.is_main
    assert not tdist.is_initialized()
    with batch_norm_across_ranks(torch.nn.BatchNorm2d(2)) as _:  # no process group: plain BatchNorm
        pass


def test_launch_settings_are_checked():
    assert init_distributed(env={}, device="cpu") == Distributed(device="cpu")
    with pytest.raises(InputError, match="--dist-backend nccl moves CUDA tensors only"):
        init_distributed(env={}, backend="nccl", device="cpu")
    with pytest.raises(InputError, match="--train-device must be one of"):
        init_distributed(env={}, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU is visible"):
            init_distributed(env={}, device="cuda")


# ---- two processes --------------------------------------------------------------------------------


def _toy(dist: Distributed):
    torch.manual_seed(0)
    space = load_space(TOY_SPACE)
    net = SuperNet(space, resolution=8, num_classes=10).to(memory_format=torch.channels_last)
    return space, net, load_dataset("digits", limit=64)


def train_toy_supernet(dist: Distributed, folder: Path) -> dict:
    space, net, ds = _toy(dist)
    run = RunDir(folder / "supernet", config={}, resume=False, dist=dist)
    train_supernet(net, ds, uniform_paths(space), config=SupernetTrainConfig(epochs=2, batch_size=GLOBAL_BATCH),
                   seed=0, run=run)
    return {"state": net.state_dict(), "history": run.history()}


def darts_second_order(dist: Distributed, folder: Path) -> dict:
    """Two epochs of DARTS's alternation with the unrolled architecture step (Eq. 7-8)."""
    space, net, ds = _toy(dist)
    arch = ArchParams(space.num_options)
    weights = [p for p in net.parameters() if p.requires_grad]
    alpha_grads: list[list[torch.Tensor]] = []

    def ce(x, y, probs):
        return classification_loss(net.weighted_forward(x, probs), y)

    def weight_step(x, y, rng, step):
        loss = ce(x, y, [p.detach() for p in arch.probs()])
        loss.backward()
        return {"loss": float(loss.detach())}

    def unrolled(x, y, train, rng, step):
        grads = unrolled_gradient(weights=weights, alphas=list(arch.alphas), xi=train.lr, average=dist.average_,
                                  train_loss=lambda: ce(train.x, train.y, arch.probs()),
                                  val_loss=lambda: ce(x, y, arch.probs()))
        for a, g in zip(arch.alphas, grads):
            a.grad = g
        return {}

    run = RunDir(folder / "darts", config={}, resume=False, dist=dist)
    alternate(supernet=net, arch=arch, ds=ds, seed=0, run=run, phase="darts", weight_step=weight_step,
              unrolled_arch_step=unrolled, config=AlternatingConfig(epochs=2, batch_size=GLOBAL_BATCH, a_lr=1e-3),
              after_arch_step=lambda step: alpha_grads.append([a.grad.clone() for a in arch.alphas]))
    return {"state": net.state_dict(), "alphas": [a.detach().clone() for a in arch.alphas],
            "alpha_grads": alpha_grads, "history": run.history()}


RUNS = {"supernet": train_toy_supernet, "darts": darts_second_order}


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for what, fn in RUNS.items():
            out = fn(Distributed(rank=rank, world_size=world, backend="gloo"), Path(folder))
            gathered: list = [None] * world
            tdist.all_gather_object(gathered, out)
            if rank == 0:
                torch.save(gathered, Path(folder) / f"{what}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[dict[str, list[dict]], Path]:
    """Every run of ``RUNS`` on two gloo processes (one spawn): per run, each process's result."""
    folder = tmp_path_factory.mktemp("ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(folder)), nprocs=2)
    return {what: torch.load(folder / f"{what}.pt", weights_only=False) for what in RUNS}, folder


def _same_on_every_process(ranks: list[dict]) -> None:
    for k, v in ranks[0]["state"].items():
        assert torch.equal(v, ranks[1]["state"][k]), k  # bit-identical: one all-reduce result everywhere


def _close(a: dict, b: dict, *, atol: float) -> float:
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst < atol, worst
    return worst


def test_two_processes_train_the_supernet_of_one_process_with_the_global_batch(two_processes, tmp_path):
    ranks, folder = two_processes[0]["supernet"], two_processes[1]
    _same_on_every_process(ranks)
    one = train_toy_supernet(SINGLE_PROCESS, tmp_path)
    assert [h["step"] for h in ranks[0]["history"]] == [h["step"] for h in one["history"]] == [4, 8]
    for h2, h1 in zip(ranks[0]["history"], one["history"]):  # global-batch loss and accuracy per epoch
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], abs=1e-5)
        assert h2["train_acc"] == h1["train_acc"]
    _close(ranks[0]["state"], one["state"], atol=1e-4)  # weights and BN running statistics
    assert sorted(p.name for p in (folder / "supernet").iterdir()) == ["checkpoint.pt", "config.json",
                                                                        "history.jsonl"]  # rank 0's, no strays


def test_darts_second_order_keeps_alpha_identical_and_equals_one_process(two_processes, tmp_path):
    ranks = two_processes[0]["darts"]
    _same_on_every_process(ranks)
    for a0, a1 in zip(ranks[0]["alphas"], ranks[1]["alphas"]):
        assert torch.equal(a0, a1)
    one = darts_second_order(SINGLE_PROCESS, tmp_path)
    for g2, g1 in zip(ranks[0]["alpha_grads"][0], one["alpha_grads"][0]):  # the first unrolled α gradient
        assert torch.allclose(g2, g1, rtol=1e-4, atol=1e-7), (g2, g1)
    for h2, h1 in zip(ranks[0]["history"], one["history"]):
        assert h2["w_loss"] == pytest.approx(h1["w_loss"], abs=1e-5)
    _close(ranks[0]["state"], one["state"], atol=1e-4)


def test_cross_rank_batch_norm_is_plain_batch_norm_in_one_process():
    bn = torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 2, 2)
    want = torch.nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, training=True)
    with batch_norm_across_ranks(bn):
        assert type(bn) is torch.nn.BatchNorm2d  # no process group: nothing switched
    bn.__class__ = CrossRankBatchNorm2d
    assert torch.allclose(bn(x), want)
    assert np.allclose(bn.running_mean.numpy(), 0.1 * x.mean((0, 2, 3)).numpy())
