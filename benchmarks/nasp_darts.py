"""Cost of one search iteration of the gradient strategies, side by side (issue 19; NASP Table 6's layout).

For each method, one iteration is a weight step on a train batch (its forward and backward timed
apart) and an architecture step on a validation batch, built from the same pieces the strategies use
(``SuperNet.weighted_forward``, ``nasp``, ``msgdas``, ``darts.unrolled_gradient``; DARTS on the
``darts`` space mixes the 14 edges of each cell, ``CellEdgeRelaxation``; NASP, GDAS and MSG-DAS run
the space's genotype decisions, one or K paths). The second-order part of DARTS's architecture step
is darts-2's minus darts-1's. Methods are timed in interleaved rounds (method
order shuffled per round, one thread, nothing else running); each figure is the median over rounds.
Activation memory is the bytes of the tensors autograd saves for backward during the architecture
step (``torch.autograd.graph.saved_tensors_hooks``, distinct storages), the quantity that grows with
the number of computed candidates.

    .venv/bin/python benchmarks/nasp_darts.py [--rounds 5] [--spaces proxyless,darts] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Callable

import numpy as np
import torch

from hwnas.search.dnas import ArchParams
from hwnas.search.strategies.darts import unrolled_gradient
from hwnas.search.strategies.msgdas import guidance_probs, sample_subgraphs, subgraph_losses
from hwnas.search.strategies.nasp import BoxArchParams, selected
from hwnas.space import load_space
from hwnas.supernet import SuperNet
from hwnas.supernet.cell_relaxation import CellEdgeRelaxation
from hwnas.train import classification_loss

CASES = {"proxyless": (32, 64), "darts": (32, 64), "nasbench201": (32, 32)}  # space: (resolution, batch)
METHODS = ("nasp", "darts-1", "darts-2", "gdas", "msgdas-k2")


class SavedBytes:
    """Bytes of the distinct storages autograd saves while active."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            ptr = t.untyped_storage().data_ptr()
            self.seen[ptr] = max(self.seen.get(ptr, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    @property
    def mib(self) -> float:
        return sum(self.seen.values()) / 2 ** 20


def mixed(net: SuperNet) -> tuple[Callable, tuple[int, ...]]:
    """DARTS's mixed forward and its weight vectors' sizes: the 14-edge cell relaxation on the ``darts``
    space (``hwnas.supernet.cell_relaxation``), the space's decisions elsewhere."""
    if net.space.name == "darts":
        relax = CellEdgeRelaxation(net)
        return relax.forward, relax.num_options
    return net.weighted_forward, tuple(net.space.num_options)


def steps(method: str, net: SuperNet, space) -> tuple[Callable, Callable]:
    """(weight forward, arch step) closures of ``method``: the first returns the weight step's loss (its
    backward is timed apart), the second leaves the architecture gradients set."""
    n = space.num_options
    if method == "nasp":
        arch = BoxArchParams(n, seed=0)

        def w_loss(x, y):
            abar = [b.detach() for b in arch.discrete()]
            return classification_loss(net.weighted_forward(x, abar, compute=selected(abar)), y)

        def a_step(x, y, xt, yt):
            abar = arch.discrete()
            ce = classification_loss(net.weighted_forward(x, abar, compute=selected(abar)), y)
            torch.autograd.grad(ce, abar, allow_unused=True)
        return w_loss, a_step
    if method.startswith("darts"):
        forward, sizes = mixed(net)
        arch = ArchParams(sizes)

        def w_loss(x, y):
            return classification_loss(forward(x, [p.detach() for p in arch.probs()]), y)

        if method == "darts-1":
            def a_step(x, y, xt, yt):
                classification_loss(forward(x, arch.probs()), y).backward()
        else:
            weights = [p for p in net.parameters() if p.requires_grad]

            def a_step(x, y, xt, yt):
                unrolled_gradient(weights=weights, alphas=list(arch.alphas),
                                  train_loss=lambda: classification_loss(forward(xt, arch.probs()), yt),
                                  val_loss=lambda: classification_loss(forward(x, arch.probs()), y), xi=0.025)
        return w_loss, a_step
    arch = ArchParams(n)
    k = 1 if method == "gdas" else 2
    gen = torch.Generator().manual_seed(0)

    def w_loss(x, y):
        rows = [torch.nn.functional.one_hot(r.argmax(-1), r.shape[-1]).float()
                for r in sample_subgraphs([a.detach() for a in arch.alphas], k, 1.0, generator=gen)]
        losses, _ = subgraph_losses(net, x, y, rows, soft=None, lam=0.0, identity_fn=None)
        return torch.stack(losses).sum()

    def a_step(x, y, xt, yt):
        rows = sample_subgraphs(list(arch.alphas), k, 1.0, generator=gen)
        soft = guidance_probs(net, arch, x) if k > 1 else None  # MSG-DAS's super-net guidance pass
        losses, _ = subgraph_losses(net, x, y, rows, soft=soft, lam=0.01, identity_fn=None)
        torch.stack(losses).sum().backward()
    return w_loss, a_step


def measure(space_name: str, resolution: int, batch: int, rounds: int) -> list[dict]:
    space = load_space(space_name)
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 10, (batch,))
    xa, ya = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 10, (batch,))
    nets, fns = {}, {}
    for m in METHODS:
        nets[m] = SuperNet(space, resolution=resolution, width_mult=1.0, num_classes=10).train()
        fns[m] = steps(m, nets[m], space)
    parts = ("forward", "backward", "arch")
    times: dict[str, dict[str, list[float]]] = {m: {k: [] for k in parts} for m in METHODS}
    memory: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for r in range(rounds + 1):  # round 0 warms up
        for m in rng.permutation(METHODS):
            w_loss, a_step = fns[m]
            net = nets[m]
            net.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = w_loss(x, y)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            del loss
            net.zero_grad(set_to_none=True)
            saved = SavedBytes()
            t3 = time.perf_counter()
            if r == 1:
                with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                    a_step(xa, ya, x, y)
                memory[m] = saved.mib
            else:
                a_step(xa, ya, x, y)
            t4 = time.perf_counter()
            print(f"round {r} {space_name} {m}: {t4 - t0:.1f} s", file=sys.stderr, flush=True)
            if r > 0:
                for k, v in zip(parts, (t1 - t0, t2 - t1, t4 - t3)):
                    times[m][k].append(v * 1e3)
    rows = []
    for m in METHODS:
        med = {k: float(np.median(times[m][k])) for k in parts}
        total = [f + b + a for f, b, a in zip(*(times[m][k] for k in parts))]
        rows.append({"space": space_name, "resolution": resolution, "batch": batch, "method": m,
                     **{f"{k}_ms": v for k, v in med.items()}, "iteration_ms": float(np.median(total)),
                     "iteration_spread_pct": float(np.ptp(total) / np.median(total) * 100),
                     "arch_saved_mib": memory[m]})
    base = next(r for r in rows if r["method"] == "nasp")
    for r in rows:
        r["iteration_vs_nasp"] = r["iteration_ms"] / base["iteration_ms"]
        r["memory_vs_nasp"] = r["arch_saved_mib"] / max(base["arch_saved_mib"], 1e-9)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--spaces", default="proxyless,darts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.spaces.split(","):
        res, batch = CASES[name]
        rows += measure(name, res, batch, args.rounds)
    if args.json:
        print(json.dumps({"machine": platform.processor() or platform.machine(), "rows": rows}))
        return 0
    print(f"| space (batch) | method | forward ms | backward ms | arch step ms | iteration ms | x NASP | "
          f"arch saved MiB | x NASP | spread % |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['space']} ({r['batch']}) | {r['method']} | {r['forward_ms']:.1f} | {r['backward_ms']:.1f} | "
              f"{r['arch_ms']:.1f} | {r['iteration_ms']:.1f} | {r['iteration_vs_nasp']:.2f} | "
              f"{r['arch_saved_mib']:.1f} | {r['memory_vs_nasp']:.2f} | {r['iteration_spread_pct']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
