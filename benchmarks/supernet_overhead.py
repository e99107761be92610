"""Supernet training-step overhead vs the standalone model of the same path (issue 6 target: <= 1.2x).

For a few sampled architectures, times one SGD training step (forward, backward, update) of
(a) the supernet running that path and (b) the extracted standalone model, alternating the two in
the same process so machine drift hits both alike; reports median step times and their ratio.
Memory: the resident-set high-water mark cannot separate a step from model construction, so the
script counts what a step holds exactly: the bytes of every tensor autograd saves for backward
(unique storages, ``torch.autograd.graph.saved_tensors_hooks``), the weights, and the gradients and
SGD momentum of the tensors the path touches (the supernet holds every candidate's weights).

Usage: python benchmarks/supernet_overhead.py [--space mobilenetv2] [--resolution 32] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _step_fn(model, forward, opt, x, y):
    import torch

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()

    return step


def timing(space_name: str, resolution: int, width: float, batch: int, archs: int, repeats: int) -> list[dict]:
    import torch

    from hwnas.space.loader import load_space
    from hwnas.supernet.supernet import SuperNet

    torch.set_num_threads(1)
    sp = load_space(space_name)
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=resolution, width_mult=width, num_classes=10).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(archs):
        arch = sp.sample(rng, resolution=resolution, width_mult=width, num_classes=10)
        alone = sn.extract(arch).to(memory_format=torch.channels_last).train()
        sn.train()
        s_opt = torch.optim.SGD(sn.parameters(), lr=0.01, momentum=0.9)
        a_opt = torch.optim.SGD(alone.parameters(), lr=0.01, momentum=0.9)
        steps = {"supernet": _step_fn(sn, lambda t: sn(t, arch), s_opt, x, y),
                 "standalone": _step_fn(alone, alone, a_opt, x, y)}
        for f in steps.values():  # warm-up
            f(), f()
        times = {k: [] for k in steps}
        for _ in range(repeats):
            for k, f in steps.items():
                t0 = time.perf_counter()
                f()
                times[k].append((time.perf_counter() - t0) * 1e3)
        med = {k: float(np.median(v)) for k, v in times.items()}
        rows.append({"arch": i, "supernet_ms": med["supernet"], "standalone_ms": med["standalone"],
                     "ratio": med["supernet"] / med["standalone"]})
    return rows


def saved_activation_mib(forward, x) -> float:
    """MiB of the tensors autograd saves for backward during one forward (unique storages)."""
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward(x)
    out.sum().backward()
    return sum(seen.values()) / 2**20


def memory(space_name: str, resolution: int, width: float, batch: int) -> dict[str, dict[str, float]]:
    import torch

    from hwnas.space.loader import load_space
    from hwnas.supernet.supernet import SuperNet

    sp = load_space(space_name)
    torch.manual_seed(0)
    sn = SuperNet(sp, resolution=resolution, width_mult=width, num_classes=10).train()
    arch = sp.sample(np.random.default_rng(0), resolution=resolution, width_mult=width, num_classes=10)
    alone = sn.extract(arch).train()
    x = torch.randn(batch, 3, resolution, resolution)
    out = {}
    for kind, model, fwd in (("supernet", sn, lambda t: sn(t, arch)), ("standalone", alone, alone)):
        params = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        act = saved_activation_mib(fwd, x)
        used = sum(p.numel() * p.element_size() for p in model.parameters() if p.grad is not None) / 2**20
        # weights + gradients of the path's tensors + SGD momentum of those + saved activations
        out[kind] = {"weights_mib": params, "grad_mib": used, "activations_mib": act,
                     "step_peak_mib": params + 2 * used + act}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mobilenetv2")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width-mult", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--archs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    rows = timing(args.space, args.resolution, args.width_mult, args.batch, args.archs, args.repeats)
    print(f"space {args.space}, resolution {args.resolution}, width x{args.width_mult}, batch {args.batch}, "
          f"1 thread; median of {args.repeats} SGD steps each, alternated")
    print(f"{'arch':>4} {'supernet ms':>12} {'standalone ms':>14} {'ratio':>6}")
    for r in rows:
        print(f"{r['arch']:>4} {r['supernet_ms']:>12.2f} {r['standalone_ms']:>14.2f} {r['ratio']:>6.3f}")
    ratios = [r["ratio"] for r in rows]
    print(f"median ratio {np.median(ratios):.3f} (target <= 1.2)")
    mem = memory(args.space, args.resolution, args.width_mult, args.batch)
    print("memory of one training step, MiB: weights, gradients of the path (the supernet only touches the")
    print("path's candidates), activations saved for backward, and peak = weights + grads + momentum + activations")
    print(f"{'':>10} {'weights':>8} {'grads':>8} {'activations':>12} {'step peak':>10}")
    for kind, m in mem.items():
        print(f"{kind:>10} {m['weights_mib']:>8.2f} {m['grad_mib']:>8.2f} {m['activations_mib']:>12.2f} "
              f"{m['step_peak_mib']:>10.2f}")


if __name__ == "__main__":
    main()
