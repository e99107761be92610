"""MSG-DAS memory and step time: K = 1, 2, 4 sub-graphs (with and without super-net guidance) vs one
standalone path, side by side (issue 8).

One SGD weight step of each configuration, on the same batch and the same sampled sub-graphs (one
Gumbel-TopK draw with a fixed seed: the K = 1 path is the first sub-graph of K = 2 and K = 4, and the
standalone model is that path extracted with its weights):

* ``standalone``: the extracted path as a plain network (the floor);
* ``K=k``: MSG-DAS's weight step: K exclusive single paths, losses summed, one backward (Fig. 2);
* ``K=k +G``: plus the gradient-stopped super-net guidance pass (Sec. 3.3, Eq. 7, λ > 0);
* ``guidance pass``: the ``torch.no_grad`` forward of the whole supernet alone (soft labels only);
* ``DARTS mixed``: the same mixed forward with autograd and a backward (what Sec. 3.3 avoids).

Memory, two ways:
* ``saved MiB``: bytes of every activation autograd keeps for backward (unique storages other than
  weights, ``torch.autograd.graph.saved_tensors_hooks``): exact, noise-free, the part that grows with K.
* ``peak MiB``: the resident-set high-water mark of one step above the resident set before it, in a
  fresh process per configuration (after 2 warm-up steps; ``VmHWM`` reset through
  ``/proc/self/clear_refs``; glibc's mmap threshold fixed so freed tensors leave the resident set).
  Includes gradients, temporaries and the guidance pass's transient feature maps.

``Σ alone MiB`` is the sum of the standalone models' saved bytes of the K paths: what a step that
holds K independent single paths would keep, the reference for "linear in K".

Step time: median of ``--repeats`` steps, configurations alternated in one process so machine drift
hits all alike; ``x alone`` is the ratio to the standalone step.

Usage: python benchmarks/msgdas_memory.py [--space proxyless] [--resolution 32] [--width-mult 1.0]
       [--batch 64] [--repeats 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
KS = (1, 2, 4)
LAMBDA = 0.01  # guidance weight when on (Table 4's best; its value does not change the cost)


def _configs() -> list[str]:
    return ["standalone"] + [f"K={k}" for k in KS] + [f"K={k} +G" for k in KS] + ["guidance pass", "DARTS mixed"]


class Bench:
    """The supernet, one batch and the sampled sub-graphs shared by every configuration."""

    def __init__(self, *, space: str, resolution: int, width_mult: float, batch: int, seed: int = 0) -> None:
        import torch

        from hwnas.search.dnas import ArchParams
        from hwnas.search.strategies.msgdas import sample_subgraphs
        from hwnas.space.loader import load_space
        from hwnas.supernet.supernet import SuperNet

        torch.manual_seed(seed)
        self.space = load_space(space)
        self.sn = SuperNet(self.space, resolution=resolution, width_mult=width_mult,
                           num_classes=10).to(memory_format=torch.channels_last).train()
        self.arch = ArchParams(self.space.num_options)
        self.x = torch.randn(batch, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (batch,))
        kmax = min(max(KS), min(self.space.num_options))
        rows = sample_subgraphs([a.detach() for a in self.arch.alphas], kmax, 1.0,
                                generator=torch.Generator().manual_seed(seed))
        self.rows = [torch.nn.functional.one_hot(r.argmax(-1), r.shape[-1]).float() for r in rows]  # d: (kmax, n)
        self.paths = [[int(r[i].argmax()) for r in self.rows] for i in range(kmax)]

    def loss_fn(self, config: str, *, path: int = 0):
        """(loss closure, parameters it trains); ``standalone`` extracts sub-graph ``path``."""
        import torch

        from hwnas.search.strategies.msgdas import guidance_probs, subgraph_losses
        from hwnas.train.loop import classification_loss

        sn, x, y = self.sn, self.x, self.y
        if config == "standalone":
            alone = sn.extract(self.paths[path]).to(memory_format=torch.channels_last).train()
            return (lambda: classification_loss(alone(x), y)), list(alone.parameters())
        if config == "guidance pass":
            return (lambda: guidance_probs(sn, self.arch, x)), []
        if config == "DARTS mixed":
            probs = [p.detach() for p in self.arch.probs()]
            return (lambda: classification_loss(sn.weighted_forward(x, probs), y)), list(sn.parameters())
        k = int(config.split("=")[1].split()[0])
        guided = config.endswith("+G")
        rows = [r[:k] for r in self.rows]

        def loss():
            soft = guidance_probs(sn, self.arch, x) if guided else None
            losses, _ = subgraph_losses(sn, x, y, rows, soft=soft, lam=LAMBDA, identity_fn=None)
            return torch.stack(losses).sum()

        return loss, list(sn.parameters())

    def step_fn(self, config: str):
        import torch

        loss_fn, params = self.loss_fn(config)
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9) if params else None

        def step():
            if opt is None:
                loss_fn()
                return
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
            opt.step()

        return step

    def saved_mib(self, config: str, *, path: int = 0) -> float:
        """MiB of tensors autograd saves for backward in one forward of ``config`` (unique storages)."""
        import torch

        loss_fn, params = self.loss_fn(config, path=path)
        weights = {t.untyped_storage().data_ptr() for t in [*params, *self.sn.parameters(), *self.sn.buffers()]}
        seen: dict[int, int] = {}

        def pack(t):
            try:
                storage = t.untyped_storage()
                if storage.data_ptr() not in weights:  # activations only, not the weights conv saves
                    seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
            except (RuntimeError, NotImplementedError):
                pass
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = loss_fn()
        if out.requires_grad:
            out.backward()
        for p in self.sn.parameters():
            p.grad = None
        return sum(seen.values()) / 2**20

    def standalone_sum_mib(self, k: int) -> float:
        """Σ over the first k sub-graphs of their standalone models' saved MiB."""
        return sum(self.saved_mib("standalone", path=i) for i in range(k))


def _status_kib() -> dict[str, int]:
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", text).group(1)) for k in ("VmRSS", "VmHWM")}


def child(args: argparse.Namespace) -> None:
    """Peak resident memory of one step of ``args.child`` in this (fresh) process; prints one JSON line."""
    import ctypes
    import gc

    import torch

    torch.set_num_threads(args.threads)
    bench = Bench(space=args.space, resolution=args.resolution, width_mult=args.width_mult, batch=args.batch)
    step = bench.step_fn(args.child)
    step(), step()  # warm-up: gradients, momentum buffers, templates exist from here on
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _status_kib()["VmRSS"]
    step()
    peak = _status_kib()["VmHWM"]
    print(json.dumps({"config": args.child, "peak_mib": (peak - before) / 1024}))


def peak_mib(args: argparse.Namespace, config: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MALLOC_MMAP_THRESHOLD_": "131072",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--child", config, "--space", args.space, "--resolution", str(args.resolution),
           "--width-mult", str(args.width_mult), "--batch", str(args.batch), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="proxyless")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width-mult", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    import torch

    torch.set_num_threads(args.threads)
    bench = Bench(space=args.space, resolution=args.resolution, width_mult=args.width_mult, batch=args.batch)
    configs = [c for c in _configs() if not c.startswith("K=") or int(c[2:].split()[0]) <= len(bench.paths)]
    steps = {c: bench.step_fn(c) for c in configs}
    for f in steps.values():  # warm-up
        f(), f()
    times: dict[str, list[float]] = {c: [] for c in configs}
    for _ in range(args.repeats):
        for c, f in steps.items():
            t0 = time.perf_counter()
            f()
            times[c].append((time.perf_counter() - t0) * 1e3)
    med = {c: float(np.median(v)) for c, v in times.items()}
    saved = {c: bench.saved_mib(c) for c in configs}
    peaks = {c: peak_mib(args, c) for c in configs}
    alone_sum = {c: bench.standalone_sum_mib(int(c[2:].split()[0])) for c in configs if c.startswith("K=")}

    print(f"space {args.space}, resolution {args.resolution}, width x{args.width_mult}, batch {args.batch}, "
          f"{args.threads} thread(s), torch {torch.__version__}; one SGD weight step each, median of {args.repeats} "
          f"(alternated)")
    for i, path in enumerate(bench.paths[:max(KS)]):
        print(f"sub-graph {i + 1}: " + " ".join(str(d.options[o]) for d, o in zip(bench.space.decisions, path)))
    print()
    print("| configuration | step ms | x alone | saved MiB | Σ alone MiB | peak MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in configs:
        s = alone_sum.get(c)
        print(f"| {c} | {med[c]:.1f} | {med[c] / med['standalone']:.2f} | {saved[c]:.2f} | "
              f"{'' if s is None else f'{s:.2f}'} | {peaks[c]:.1f} |")


if __name__ == "__main__":
    main()
