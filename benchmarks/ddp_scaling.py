"""Data-parallel scaling (issue 21): supernet training and candidate scoring, 1 vs 2 processes, side by side.

Each configuration starts its processes itself (``torch.multiprocessing``, gloo on this CPU, one
torch thread per process) and runs the real loops: ``train_supernet`` (uniform single paths, SPOS)
for ``--steps`` timed steps after ``--warmup`` untimed ones, then ``SupernetEvaluator.score_many``
on a pool of ``--pool`` distinct candidates (evolution's scoring). Configurations alternate in
``--rounds`` rounds (1, 2, 1 thread × 2, 1, 2, ...) so machine drift hits them alike; the median
round is reported. Rows:

* ``1 proc``: one process, batch B_global, no process group (``SINGLE_PROCESS``);
* ``2 proc``: two processes, B_global / 2 each (``torchrun --nproc_per_node=2``);
* ``1 proc x2 thr``: one process with two intra-op threads, the other way to use two cores.

Where the time goes in the 2-process run: every ``torch.distributed.all_reduce`` (gradients, the
cross-rank BatchNorm statistics, the history metrics) is timed on each process; processes share
one monotonic clock, so per call the communication is ``end − (latest start)`` and a process's
idle time is ``(latest start) − (its start)``: waiting for the slower one.

``--paper``: the inputs of the on-paper estimate for many GPUs (RESULTS.md): the gradient bytes
one step all-reduces for the ``proxyless`` space at 224 px (every sampled path's gradients,
measured by a real backward pass), the number of BatchNorm all-reduces per step, and, with
``--train-device cuda``, the compute time of one step at ``--paper-batch`` images per GPU.

    .venv/bin/python benchmarks/ddp_scaling.py --quick        # seconds: checks that it runs
    .venv/bin/python benchmarks/ddp_scaling.py                # full table (see RESULTS.md)
    .venv/bin/python benchmarks/ddp_scaling.py --paper [--train-device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class _Stop(Exception):
    """Ends ``train_supernet`` after the timed steps (raised by the timing sampler)."""


def _timed_all_reduce(tdist, calls: list):
    """``torch.distributed.all_reduce`` that records (start, end) of every call (``perf_counter``, s)."""
    inner = tdist.all_reduce

    def all_reduce(tensor, *args, **kwargs):
        t0 = time.perf_counter()
        out = inner(tensor, *args, **kwargs)
        calls.append((t0, time.perf_counter()))
        return out

    return all_reduce


def _worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    import torch
    import torch.distributed as tdist

    torch.set_num_threads(cfg["threads"])
    from hwnas.space import load_space
    from hwnas.supernet import SuperNet, SupernetEvaluator, SupernetTrainConfig, train_supernet, uniform_paths
    from hwnas.train import SINGLE_PROCESS, Distributed, RunDir, load_dataset

    calls: list = []
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        tdist.init_process_group("gloo", rank=rank, world_size=world)
        tdist.all_reduce = _timed_all_reduce(tdist, calls)
        dist = Distributed(rank=rank, world_size=world, backend="gloo")
    else:
        dist = SINGLE_PROCESS
    space = load_space(cfg["space"])
    ds = load_dataset(cfg["data"], seed=0, limit=cfg["data_limit"])
    torch.manual_seed(0)
    net = SuperNet(space, resolution=cfg["resolution"], width_mult=cfg["width"], num_classes=ds.num_classes,
                   sharing=cfg["sharing"]).to(memory_format=torch.channels_last)
    paths = uniform_paths(space)
    starts: list[float] = []
    last = cfg["warmup"] + cfg["steps"]

    def timed(rng):
        starts.append(time.perf_counter())
        if len(starts) > last:
            raise _Stop
        return paths(rng)

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run", config={}, resume=False, dist=dist)
        config = SupernetTrainConfig(epochs=1000, batch_size=cfg["batch"], checkpoint_every=10**9)
        try:
            train_supernet(net, ds, timed, config=config, seed=0, run=run)
        except _Stop:
            pass
    t0, t1 = starts[cfg["warmup"]], starts[last]
    window = [(a, b) for a, b in calls if t0 <= a < t1]
    pool = [space.encode(space.sample(np.random.default_rng([7, i]))) for i in range(cfg["pool"])]
    evaluator = SupernetEvaluator(net, ds, bn_batches=cfg["bn_batches"], seed=0, dist=dist)
    evaluator.score_many(pool[:1])  # first use: input preparation
    evaluator.cache.clear()
    dist.barrier()
    s0 = time.perf_counter()
    evaluator.score_many(pool[1:])
    s1 = time.perf_counter()
    mine = {"train": (t0, t1), "calls": window, "score": (s0, s1)}
    if world > 1:
        gathered: list = [None] * world
        tdist.all_gather_object(gathered, mine)
        tdist.destroy_process_group()
    else:
        gathered = [mine]
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))


def _breakdown(ranks: list[dict], cfg: dict) -> dict:
    """Images/s, candidates/s, and per process the all-reduce and idle shares of the timed steps."""
    wall = max(r["train"][1] for r in ranks) - min(r["train"][0] for r in ranks)  # s
    comm, idle = [0.0] * len(ranks), [0.0] * len(ranks)
    for k in range(min(len(r["calls"]) for r in ranks)):
        latest = max(r["calls"][k][0] for r in ranks)
        for i, r in enumerate(ranks):
            comm[i] += max(0.0, r["calls"][k][1] - latest)
            idle[i] += latest - r["calls"][k][0]
    score = max(r["score"][1] for r in ranks) - min(r["score"][0] for r in ranks)
    return {"images_per_s": cfg["steps"] * cfg["batch"] / wall, "step_ms": 1e3 * wall / cfg["steps"],
            "allreduce_pct": 100 * max(comm) / wall, "idle_pct": 100 * max(idle) / wall,
            "collectives_per_step": min(len(r["calls"]) for r in ranks) / cfg["steps"],
            "candidates_per_s": (cfg["pool"] - 1) / score}


def run_config(world: int, threads: int, cfg: dict) -> dict:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ranks.json")
        mp.spawn(_worker, args=(world, port, {**cfg, "threads": threads}, out), nprocs=world)
        return _breakdown(json.loads(Path(out).read_text()), cfg)


def paper(args) -> dict:
    """Gradient bytes all-reduced per step (path-dependent: the mean over sampled paths) and BN layers
    per path, for a space at a resolution; with a device, one step's compute time (ms)."""
    import torch

    from hwnas.space import load_space
    from hwnas.supernet import SuperNet, step_rng, uniform_paths

    space = load_space(args.paper_space)
    torch.manual_seed(0)
    net = SuperNet(space, resolution=args.paper_resolution, num_classes=1000).to(
        args.train_device, memory_format=torch.channels_last)
    sampler = uniform_paths(space)
    grads, bns, params, ms = [], [], [], []
    total = sum(p.numel() for p in net.parameters())
    for step in range(args.paper_paths):
        path = next(iter(sampler(step_rng(0, step))))
        batch = args.paper_batch if args.train_device != "cpu" else 2
        x = torch.randn(batch, 3, args.paper_resolution, args.paper_resolution, device=args.train_device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (batch,), device=args.train_device)
        for rep in range(3 if args.train_device != "cpu" else 1):
            net.zero_grad(set_to_none=True)
            if args.train_device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            torch.nn.functional.cross_entropy(net(x, path), y).backward()
            if args.train_device != "cpu":
                torch.cuda.synchronize()
                if rep > 0:
                    ms.append(1e3 * (time.perf_counter() - t0))
        live = [p for p in net.parameters() if p.grad is not None]
        params.append(sum(p.numel() for p in live))
        grads.append(sum(p.grad.numel() * p.grad.element_size() for p in live))
        bns.append(sum(1 for s in net.path(path) if s.candidate is not None
                       for m in net.candidates[s.candidate].modules() if isinstance(m, torch.nn.BatchNorm2d)))
    return {"space": space.name, "resolution": args.paper_resolution, "paths": args.paper_paths,
            "supernet_params": total, "path_params_mean": float(np.mean(params)),
            "grad_bytes_mean": float(np.mean(grads)), "grad_bytes_max": float(np.max(grads)),
            "bn_layers_mean": float(np.mean(bns)), "device": args.train_device, "batch_per_gpu": args.paper_batch,
            "step_ms_median": float(np.median(ms)) if ms else None,
            "gpu": torch.cuda.get_device_name() if args.train_device != "cpu" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="proxyless")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--sharing", default="separate")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-limit", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64, help="global batch (2 processes: half each)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--pool", type=int, default=9, help="candidates scored (the first one untimed)")
    ap.add_argument("--bn-batches", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    ap.add_argument("--paper", action="store_true", help="the inputs of the on-paper many-GPU estimate")
    ap.add_argument("--paper-space", default="proxyless")
    ap.add_argument("--paper-resolution", type=int, default=224)
    ap.add_argument("--paper-batch", type=int, default=64, help="images per GPU of the timed step (cuda)")
    ap.add_argument("--paper-paths", type=int, default=8)
    ap.add_argument("--train-device", default="cpu")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.paper:
        r = paper(a)
        print(json.dumps(r) if a.json else "\n".join(f"{k}: {v}" for k, v in r.items()))
        return
    if a.quick:
        a.space, a.data, a.data_limit, a.resolution, a.steps, a.warmup, a.pool, a.rounds, a.batch = (
            str(ROOT / "tests" / "data" / "toy_space.json"), "digits", 200, 8, 4, 1, 3, 1, 16)
    cfg = {"space": a.space, "resolution": a.resolution, "width": a.width, "sharing": a.sharing, "data": a.data,
           "data_limit": a.data_limit, "batch": a.batch, "steps": a.steps, "warmup": a.warmup, "pool": a.pool,
           "bn_batches": a.bn_batches}
    rows = {"1 proc": (1, 1), "2 proc": (2, 1), "1 proc x2 thr": (1, 2)}
    results: dict[str, list[dict]] = {k: [] for k in rows}
    for _ in range(a.rounds):
        for name, (world, threads) in rows.items():
            results[name].append(run_config(world, threads, cfg))
    med = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for name, rs in results.items()}
    if a.json:
        print(json.dumps({"config": cfg, "median": med, "rounds": results}))
        return
    base = med["1 proc"]
    print(f"{a.space} at {a.resolution} px, global batch {a.batch}, {a.steps} steps, {a.pool - 1} candidates, "
          f"{a.rounds} round(s), {os.cpu_count()} cpus")
    print(f"{'config':>14} {'img/s':>8} {'x':>5} {'step ms':>8} {'allreduce%':>10} {'idle%':>6} {'coll/step':>9} "
          f"{'cand/s':>7} {'x':>5}")
    for name, m in med.items():
        print(f"{name:>14} {m['images_per_s']:8.1f} {m['images_per_s'] / base['images_per_s']:5.2f} "
              f"{m['step_ms']:8.1f} {m['allreduce_pct']:10.1f} {m['idle_pct']:6.1f} {m['collectives_per_step']:9.1f} "
              f"{m['candidates_per_s']:7.2f} {m['candidates_per_s'] / base['candidates_per_s']:5.2f}")


if __name__ == "__main__":
    main()
