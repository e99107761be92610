"""Peak memory and time per step: ProxylessNAS weight / architecture steps vs one path vs DARTS.

Four steps on the same space, supernet, batch and path, each in a FRESH process (so one cannot
inherit another's allocator state):

* ``one-path``: the standalone model of one path (``SuperNet.extract``): forward, backward, SGD step.
* ``proxyless-weight``: ProxylessNAS weight step on the same path through the supernet (binary
  gates = that path; Cai et al. 2019, Sec. 3.2): forward, backward, SGD step.
* ``proxyless-arch``: ProxylessNAS two-path architecture step (Sec. 3.2.1) with the same path active
  and a second sampled option per layer: gated forward, backward into the gates and α only,
  BinaryConnect gradient, Adam step, rescaling (the shipped ``hwnas.search.strategies.proxyless`` code).
* ``darts``: a DARTS-style step computing every candidate of every layer (the mixed op
  Σ softmax(α)_o · op_o(x), Liu et al. 2019, Eq. 2; ``SuperNet.weighted_forward``): forward,
  backward into the weights and α, SGD and Adam steps.

Peak memory of a step is measured two ways, both as growth above what is resident before the step
(weights, optimizer state and the input batch are therefore excluded; they are listed separately):

1. allocator peak: every CPU allocation and free of the step as recorded by ``torch.profiler``
   (``profile_memory=True``), replayed in time order; the largest sum of live bytes. Exact for
   torch tensors (activations saved for backward, gradients, workspaces); blind to non-torch memory.
2. RSS peak: the kernel's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``
   right before the step, after ``malloc_trim``) minus the resident set before the step. Includes
   allocator overhead and fragmentation; a cross-check of (1).

``tracemalloc`` would see none of torch's memory; there are no CPU caching-allocator statistics.
Time per step is the median wall time of ``--repeats`` steps after one warm-up step, with
``--threads`` intra-op threads. Run it on a quiet machine.

    .venv/bin/python benchmarks/proxyless_memory.py --json benchmarks/proxyless_memory.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from hwnas.jsonio import write_json_atomic  # noqa: E402
from hwnas.search.dnas import ArchParams  # noqa: E402
from hwnas.search.objective import Constraints  # noqa: E402
from hwnas.search.proxyless_steps import ArchObjective, ProxylessConfig, ProxylessSteps  # noqa: E402
from hwnas.space.loader import load_space  # noqa: E402
from hwnas.supernet.binary_gates import TwoPaths, sample_path  # noqa: E402
from hwnas.supernet.supernet import SuperNet  # noqa: E402
from hwnas.train.loop import classification_loss  # noqa: E402

CONFIGS = ("one-path", "proxyless-weight", "proxyless-arch", "darts")
MB = 2.0**20


class _NoLatency:
    """Stand-in predictor when no table is given: E[LAT] = 0, so the arch loss is α·CE·const. The
    latency term is a few einsums over α (kilobytes); it does not change the step's memory."""

    def expected_latency(self, probs):
        return probs[0].sum() * 0 + 1.0

    expected_flops = expected_params = expected_latency


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{key} not in /proc/self/status")


def _rss_peak(step) -> float | None:
    """Peak RSS growth (MB) during one call of ``step``; None where the peak cannot be reset."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    before = _status_mb("VmRSS")
    step()
    return _status_mb("VmHWM") - before


def _allocator_peak(step) -> float | None:
    """Peak of live torch CPU bytes (MB) allocated during one call of ``step`` (torch.profiler)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:
        records = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                         if e.name() == "[memory]")
    except AttributeError:  # the profiler's raw results moved: report nothing rather than a guess
        return None
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak / MB


def _setup(args: argparse.Namespace, config: str):
    """The step of ``config`` and the bytes of weights it keeps resident."""
    torch.manual_seed(args.seed)
    space = load_space(args.space)
    supernet = SuperNet(space, resolution=args.resolution, width_mult=args.width_mult, num_classes=args.classes)
    supernet.to(memory_format=torch.channels_last).train()
    arch = ArchParams(space.num_options)
    rng = np.random.default_rng(args.seed)
    path = sample_path(arch.alphas, rng)  # the path of the weight step (and the active path of the arch step)
    other = np.array([(int(p) + 1 + int(rng.integers(n - 1))) % n if n > 1 else int(p)
                      for p, n in zip(path, space.num_options)], dtype=np.int64)
    paths = TwoPaths(active=path, inactive=other)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=gen).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch,), generator=gen)
    cfg = ProxylessConfig()
    if args.table:
        from hwnas.latency.batch import BatchPredictor
        from hwnas.latency.model import LatencyModel

        predictor = BatchPredictor.build(LatencyModel.load(args.table), space, resolution=args.resolution,
                                                       width_mult=args.width_mult, num_classes=args.classes)
        objective = ArchObjective(config=cfg, predictor=predictor, constraints=Constraints(latency_ms=args.latency_ms))
    else:
        objective = ArchObjective(config=cfg, predictor=_NoLatency(), constraints=Constraints(latency_ms=1.0))
    stepper = ProxylessSteps(cfg=cfg, supernet=supernet, arch=arch, objective=objective, state=None)

    def nbytes(module) -> int:
        return sum(p.numel() * p.element_size() for p in module.parameters())

    if config == "one-path":
        model = supernet.extract(path).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            classification_loss(model(x), y).backward()
            opt.step()

        return step, nbytes(model)
    if config == "proxyless-weight":
        opt = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)

        def step():
            opt.zero_grad(set_to_none=True)
            stepper.weight_step_on(x, y, path)
            opt.step()

        return step, nbytes(supernet)
    if config == "proxyless-arch":
        a_opt = torch.optim.Adam(arch.parameters(), lr=1e-3, betas=(0.0, 0.999))

        def step():
            a_opt.zero_grad(set_to_none=True)
            stepper.arch_gradient_on(x, y, paths)
            a_opt.step()
            stepper.after_arch_step(0)

        return step, nbytes(supernet)
    if config == "darts":
        w_opt = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)
        a_opt = torch.optim.Adam(arch.parameters(), lr=1e-3, betas=(0.0, 0.999))

        def step():
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            classification_loss(supernet.weighted_forward(x, arch.probs()), y).backward()
            w_opt.step()
            a_opt.step()

        return step, nbytes(supernet)
    raise ValueError(config)


def worker(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    step, weights = _setup(args, args.worker)
    step()  # warm-up: lazy initialization, optimizer state, first-touch of buffers
    rss = _rss_peak(step)
    alloc = _allocator_peak(step)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"config": args.worker, "allocator_peak_mb": alloc, "rss_peak_mb": rss,
            "ms_per_step": 1e3 * statistics.median(times), "ms_min": 1e3 * min(times),
            "weights_mb": weights / MB}


def _ratio(v, ref) -> str:
    return "–" if v is None or not ref else f"{v / ref:.2f}×"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="proxyless")
    p.add_argument("--resolution", type=int, default=96)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", default=None, help="optional latency table (adds the real latency term to the arch step)")
    p.add_argument("--latency-ms", type=float, default=1.0, help="budget T with --table")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    rows = []
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
    for config in args.configs.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        r = subprocess.run([sys.executable, __file__, *passthrough, "--worker", config], capture_output=True,
                           text=True, env=env)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    ref = next((r for r in rows if r["config"] == "one-path"), None)
    print(f"\n{args.space} supernet, {args.resolution}x{args.resolution}, width {args.width_mult:g}, "
          f"batch {args.batch}, "
          f"{args.threads} thread(s), seed {args.seed}\n")
    print("| step | allocator peak (MB) | vs one path | RSS peak (MB) | vs one path | time/step (ms) | vs one path "
          "| resident weights (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        a, s, t = r["allocator_peak_mb"], r["rss_peak_mb"], r["ms_per_step"]
        print(f"| {r['config']} | {'–' if a is None else f'{a:.1f}'} | {_ratio(a, ref and ref['allocator_peak_mb'])} "
              f"| {'–' if s is None else f'{s:.1f}'} | {_ratio(s, ref and ref['rss_peak_mb'])} | {t:.1f} "
              f"| {_ratio(t, ref and ref['ms_per_step'])} | {r['weights_mb']:.1f} |")
    if args.json:
        write_json_atomic(args.json, {"settings": {k: v for k, v in vars(args).items() if k != "worker"},
                                      "torch": torch.__version__, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
