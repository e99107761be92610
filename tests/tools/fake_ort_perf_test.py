"""A stand-in "device" for the ``remote`` backend's tests: runs an ONNX model with ONNX Runtime in
this separate process and prints its timings in ``onnxruntime_perf_test``'s output format.

Usage (the subset of ``onnxruntime_perf_test`` flags hwnas's examples use)::

    python fake_ort_perf_test.py [-I] [-m times] [-r RUNS] [-x THREADS] MODEL.onnx
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("-r", type=int, default=10, help="timed runs")
    p.add_argument("-x", type=int, default=1, help="intra-op threads")
    p.add_argument("-I", action="store_true", help="generate inputs (always done here)")
    p.add_argument("-m", default="times", choices=["times"], help="test mode")
    p.add_argument("model")
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.x
    t0 = time.perf_counter()
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    created = time.perf_counter() - t0
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in inp.shape],
                                                 dtype=np.float32)
    t0 = time.perf_counter()
    sess.run(None, {inp.name: x})
    first_ms = (time.perf_counter() - t0) * 1e3
    costs = []
    for _ in range(a.r):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        costs.append(time.perf_counter() - t0)  # s
    total = sum(costs)
    q = np.percentile(costs, [50, 90, 95, 99])
    print(f"Session creation time cost: {created:g} s")
    print(f"First inference time cost: {first_ms:.0f} ms")
    print(f"Total inference time cost: {total:g} s")
    print(f"Total inference requests: {len(costs)}")
    print(f"Average inference time cost: {total / len(costs) * 1000:g} ms")
    print(f"Total inference run time: {total:g} s")
    print(f"Number of inferences per second: {len(costs) / total:g}")
    print(f"Min Latency: {min(costs):g} s")
    print(f"Max Latency: {max(costs):g} s")
    print(f"P50 Latency: {q[0]:g} s")
    print(f"P90 Latency: {q[1]:g} s")
    print(f"P95 Latency: {q[2]:g} s")
    print(f"P99 Latency: {q[3]:g} s")


if __name__ == "__main__":
    main()
