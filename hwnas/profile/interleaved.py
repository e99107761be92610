"""Interleaved timing rounds: the sampling protocol of the profiler (``hwnas.profile.profiler``).

Each round takes one sample of every prepared runner in a freshly shuffled order, so drift and
background load hit all of them alike; a sample is one run, or the mean of back-to-back runs lasting
at least ``min_sample_ms``; entries whose coefficient of variation stays above ``max_cv`` are
measured again (another interleaved pass over just those) and the pass with the lowest CV is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.latency import entry_cv, entry_from_samples
from hwnas.profile.backend import Runner

#: Most back-to-back runs one sample may average.
MAX_RUNS_PER_SAMPLE = 1000


def _rounds(runners: dict[str, Runner], keys: list[str], rounds: int, rng: np.random.Generator,
            bar: Any, runs: dict[str, int] | None = None) -> dict[str, list[float]]:
    """``rounds`` rounds; each takes one sample of every key in a fresh random order.

    A sample is the mean of ``runs[key]`` back-to-back ``run_once`` times (1 when ``runs`` is None), ms.
    """
    samples: dict[str, list[float]] = {k: [] for k in keys}
    order = list(keys)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            n = runs[k] if runs else 1
            r = runners[k]
            samples[k].append(sum(r.run_once() for _ in range(n)) / n)
        if bar is not None:
            bar.update(len(order))
    return samples


def runs_per_sample(single_ms: dict[str, float], min_sample_ms: float) -> dict[str, int]:
    """Back-to-back runs per sample so that a sample lasts at least ``min_sample_ms``.

    Example: a 0.3 ms block with ``min_sample_ms = 1`` gets ``ceil(1 / 0.3) = 4`` runs.
    """
    out = {}
    for k, ms in single_ms.items():
        n = 1 if min_sample_ms <= 0 else int(np.ceil(min_sample_ms / max(ms, 1e-6)))
        out[k] = int(min(MAX_RUNS_PER_SAMPLE, max(1, n)))
    return out


def measure_interleaved(runners: dict[str, Runner], keys: list[str], *, settings: Any,
                        rng: np.random.Generator, bar: Any = None, remeasured: list[str] | None = None,
                        average: bool = True) -> dict[str, list[float]]:
    """Warm-up, interleaved timed rounds and CV-driven re-measurement of a set of runners.

    Args:
        runners: Prepared runners by key.
        keys: The keys to measure (all in ``runners``).
        settings: ``warmup``, ``repeats``, ``max_cv``, ``remeasure``, ``min_sample_ms``.
        rng: Shuffles each round's order.
        bar: Optional tqdm bar (updated per round).
        remeasured: Collects the keys that were measured again.
        average: Average back-to-back runs per sample (``min_sample_ms``); False: single runs.

    Returns:
        The kept samples of each key, ms.
    """
    s = settings
    warm = _rounds(runners, keys, max(s.warmup, 1 if average and s.min_sample_ms > 0 else 0), rng, bar)
    runs = None
    if average and s.min_sample_ms > 0:
        runs = runs_per_sample({k: float(np.median(v)) for k, v in warm.items()}, s.min_sample_ms)
    samples = _rounds(runners, keys, s.repeats, rng, bar, runs)
    cv = {k: entry_cv(entry_from_samples(v)) for k, v in samples.items()}
    for _ in range(s.remeasure):
        wide = [k for k in keys if cv[k] > s.max_cv]
        if not wide:
            break
        if bar is not None:
            bar.total += len(wide) * s.repeats
        again = _rounds(runners, wide, s.repeats, rng, bar, runs)
        for k in wide:
            c = entry_cv(entry_from_samples(again[k]))
            if c < cv[k]:
                samples[k], cv[k] = again[k], c
            if remeasured is not None and k not in remeasured:
                remeasured.append(k)
    return samples
