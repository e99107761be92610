"""Cost of one search iteration of the gradient strategies, side by side (issue 19; NASP Table 6's layout).

For each method, one iteration is a weight step on a train batch and an architecture step on a
validation batch, built from the same pieces the strategies use (``SuperNet.weighted_forward``,
``nasp``, ``msgdas``, ``darts.unrolled_gradient``). Methods are timed in interleaved rounds (method
order shuffled per round, one thread, nothing else running); each figure is the median over rounds.
Activation memory is the bytes of the tensors autograd saves for backward during the architecture
step (``torch.autograd.graph.saved_tensors_hooks``, distinct storages), the quantity that grows with
the number of computed candidates.

    .venv/bin/python benchmarks/nasp_darts.py [--rounds 5] [--json]
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
from hwnas.train import classification_loss

CASES = {"proxyless": (32, 64), "nasbench201": (32, 32)}  # space: (resolution, batch)
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


def steps(method: str, net: SuperNet, space) -> tuple[Callable, Callable]:
    """(weight step, arch step) closures of ``method``; each returns nothing and leaves grads set."""
    n = space.num_options
    if method == "nasp":
        arch = BoxArchParams(n, seed=0)

        def w_step(x, y):
            abar = [b.detach() for b in arch.discrete()]
            classification_loss(net.weighted_forward(x, abar, compute=selected(abar)), y).backward()

        def a_step(x, y, xt, yt):
            abar = arch.discrete()
            ce = classification_loss(net.weighted_forward(x, abar, compute=selected(abar)), y)
            torch.autograd.grad(ce, abar, allow_unused=True)
        return w_step, a_step
    arch = ArchParams(n)
    if method.startswith("darts"):
        def w_step(x, y):
            classification_loss(net.weighted_forward(x, [p.detach() for p in arch.probs()]), y).backward()

        if method == "darts-1":
            def a_step(x, y, xt, yt):
                classification_loss(net.weighted_forward(x, arch.probs()), y).backward()
        else:
            weights = [p for p in net.parameters() if p.requires_grad]

            def a_step(x, y, xt, yt):
                unrolled_gradient(weights=weights, alphas=list(arch.alphas),
                                  train_loss=lambda: classification_loss(net.weighted_forward(xt, arch.probs()), yt),
                                  val_loss=lambda: classification_loss(net.weighted_forward(x, arch.probs()), y),
                                  xi=0.025)
        return w_step, a_step
    k = 1 if method == "gdas" else 2
    gen = torch.Generator().manual_seed(0)

    def w_step(x, y):
        rows = [torch.nn.functional.one_hot(r.argmax(-1), r.shape[-1]).float()
                for r in sample_subgraphs([a.detach() for a in arch.alphas], k, 1.0, generator=gen)]
        losses, _ = subgraph_losses(net, x, y, rows, soft=None, lam=0.0, identity_fn=None)
        torch.stack(losses).sum().backward()

    def a_step(x, y, xt, yt):
        rows = sample_subgraphs(list(arch.alphas), k, 1.0, generator=gen)
        soft = guidance_probs(net, arch, x) if k > 1 else None  # MSG-DAS's super-net guidance pass
        losses, _ = subgraph_losses(net, x, y, rows, soft=soft, lam=0.01, identity_fn=None)
        torch.stack(losses).sum().backward()
    return w_step, a_step


def measure(space_name: str, resolution: int, batch: int, rounds: int) -> list[dict]:
    space = load_space(space_name)
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 10, (batch,))
    xa, ya = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 10, (batch,))
    nets, fns = {}, {}
    for m in METHODS:
        nets[m] = SuperNet(space, resolution=resolution, width_mult=1.0, num_classes=10).train()
        fns[m] = steps(m, nets[m], space)
    times: dict[str, dict[str, list[float]]] = {m: {"weight": [], "arch": []} for m in METHODS}
    memory: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for r in range(rounds + 1):  # round 0 warms up
        for m in rng.permutation(METHODS):
            w_step, a_step = fns[m]
            net = nets[m]
            net.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            w_step(x, y)
            t1 = time.perf_counter()
            net.zero_grad(set_to_none=True)
            saved = SavedBytes()
            t2 = time.perf_counter()
            if r == 1:
                with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                    a_step(xa, ya, x, y)
                memory[m] = saved.mib
            else:
                a_step(xa, ya, x, y)
            t3 = time.perf_counter()
            if r > 0:
                times[m]["weight"].append((t1 - t0) * 1e3)
                times[m]["arch"].append((t3 - t2) * 1e3)
    rows = []
    for m in METHODS:
        w, a = float(np.median(times[m]["weight"])), float(np.median(times[m]["arch"]))
        rows.append({"space": space_name, "resolution": resolution, "batch": batch, "method": m,
                     "weight_ms": w, "arch_ms": a, "iteration_ms": w + a,
                     "weight_spread_pct": float(np.ptp(times[m]["weight"]) / w * 100),
                     "arch_spread_pct": float(np.ptp(times[m]["arch"]) / a * 100),
                     "arch_saved_mib": memory[m]})
    base = next(r for r in rows if r["method"] == "nasp")
    for r in rows:
        r["iteration_vs_nasp"] = r["iteration_ms"] / base["iteration_ms"]
        r["memory_vs_nasp"] = r["arch_saved_mib"] / max(base["arch_saved_mib"], 1e-9)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--spaces", default=",".join(CASES))
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
    print(f"{'space':12} {'method':10} {'weight ms':>9} {'arch ms':>9} {'iter ms':>9} {'x NASP':>7} "
          f"{'arch saved MiB':>14} {'x NASP':>7} {'spread w/a %':>13}")
    for r in rows:
        print(f"{r['space']:12} {r['method']:10} {r['weight_ms']:9.1f} {r['arch_ms']:9.1f} {r['iteration_ms']:9.1f} "
              f"{r['iteration_vs_nasp']:7.2f} {r['arch_saved_mib']:14.1f} {r['memory_vs_nasp']:7.2f} "
              f"{r['weight_spread_pct']:6.0f}/{r['arch_spread_pct']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
