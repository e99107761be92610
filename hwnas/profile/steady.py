"""The steady-latency estimator: interleaved short rounds, a robust figure per candidate, its spread.

This machine kind (and phones, under thermal and DVFS control) switches between a fast state and
states up to ~1.45× slower, for seconds to minutes. One median of consecutive runs is therefore
not a latency. The estimator:

1. **Interleaves short rounds.** Each round runs every candidate ``runs_per_round`` times back to
   back (after its own warm-up run when there are several), in a freshly shuffled order; the
   round's median is one sample. A state switch then hits every candidate of the same round alike.
   One candidate alone (``measure_module``, ``hwnas export``) gets consecutive short rounds.
2. **Reports a steady figure**: a low quantile (``quantile``, default ``DEFAULT_QUANTILE``) of the round medians,
   i.e. the machine's fast, unloaded state, which is what a table profiled at another time can be
   compared with. The spread is ``(q90 - q10) / q50`` of the round medians, in %.
3. **Compares side by side.** With a ``reference`` candidate, each candidate's ratio to the
   reference is taken per round (same round, same state) and summarized by its median; ratios
   move far less than absolute figures when the state switches.
4. **Detects an unstable machine.** When any candidate's spread exceeds ``max_spread_pct`` in an
   attempt, another attempt of ``rounds`` rounds follows (up to ``retries`` times) until one is
   stable. The figures are over the rounds of all attempts: a quantile over more rounds is
   steadier, and a stable but slow attempt (a slow state lasting minutes) must not replace a
   mixed one that saw the fast state. ``SideBySide.remeasured`` says so, and ``unstable`` that
   even the last attempt spread beyond the limit.

Pure functions of samples (``steady_figure``, ``spread_pct``) are separate from the timing loop
(``measure_side_by_side``) so they can be tested on synthetic timings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.profile.backend import Backend, Runner, gc_paused

#: The quantile of round medians reported as the steady figure: THE one line that picks the
#: estimator. 0: the fastest round's median. ``benchmarks/steady_estimator.py`` compared the
#: candidates on the same interleaved runs in 3 fresh processes (RESULTS.md): across processes an
#: arch's figure moved 22% (median over archs) with q0, 24% with q5, 31% with q10, 55% with q25 and
#: 65% with q50, because the share of rounds spent in a slow state differs from process to process.
DEFAULT_QUANTILE = 0.0
#: Back-to-back runs per round when a caller gives only a total number of runs (``--repeats``).
DEFAULT_RUNS_PER_ROUND = 5


def estimator_name(quantile: float) -> str:
    """The recorded name of the estimator with ``quantile``, e.g. ``steady/q25-of-round-medians``."""
    q = round(100 * quantile, 1)  # %: 0.07 -> 7, 0.125 -> 12.5
    return f"steady/q{int(q) if q == int(q) else q}-of-round-medians"


#: Name of the default estimator, recorded next to every number it produced.
ESTIMATOR = estimator_name(DEFAULT_QUANTILE)


@dataclass(frozen=True)
class SteadySettings:
    """Settings of the steady estimator.

    Attributes:
        rounds: Interleaved rounds per attempt.
        runs_per_round: Back-to-back timed runs of a candidate per round (their median is the sample).
        warmup: Untimed runs of every candidate before the first round.
        quantile: The quantile of round medians reported as the steady figure.
        max_spread_pct: A candidate whose round medians spread more than this (q90-q10 over q50, %)
            marks the attempt unstable.
        retries: Further attempts (of ``rounds`` rounds each) while unstable; figures pool all rounds.
    """

    rounds: int = 30
    runs_per_round: int = DEFAULT_RUNS_PER_ROUND
    warmup: int = 5
    quantile: float = DEFAULT_QUANTILE
    max_spread_pct: float = 15.0
    retries: int = 1

    @property
    def name(self) -> str:
        """The estimator's recorded name (it depends on ``quantile`` only)."""
        return estimator_name(self.quantile)

    def to_json(self) -> dict[str, Any]:
        """Name and settings, as recorded in tables, stores, reports and cards."""
        return {"name": self.name, **asdict(self)}

    @classmethod
    def from_counts(cls, *, repeats: int | None = None, warmup: int | None = None, rounds: int | None = None,
                    runs_per_round: int | None = None, base: "SteadySettings | None" = None) -> "SteadySettings":
        """Settings from the flags a command takes (``--repeats``/``--warmup``/``--rounds``/``--runs-per-round``).

        ``rounds`` and ``runs_per_round`` win when given (a missing one comes from ``repeats``, else
        ``base``). A bare ``repeats`` (total timed runs, the older flag) becomes ``repeats / k`` rounds
        of ``k`` runs, ``k`` the largest divisor of ``repeats`` up to ``base.runs_per_round``, so the
        count of timed runs stays exactly ``repeats`` (30 -> 6 rounds x 5; 7 -> 7 rounds x 1).
        Nothing given: ``base`` (default ``SteadySettings()``).

        Raises:
            InputError: naming the flag, for a non-positive count.
        """
        base = base or cls()
        for flag, v, low in (("--repeats", repeats, 1), ("--warmup", warmup, 0), ("--rounds", rounds, 1),
                             ("--runs-per-round", runs_per_round, 1)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise InputError(f"{flag} must be an integer >= {low}, got {v!r}.")
        k, n = runs_per_round, rounds
        if k is None and n is None and repeats is not None:
            k = max(d for d in range(1, min(base.runs_per_round, repeats) + 1) if repeats % d == 0)
            n = repeats // k
        elif n is None:
            n = max(1, repeats // k) if repeats is not None else base.rounds
        k = k if k is not None else base.runs_per_round
        return dataclasses.replace(base, rounds=n, runs_per_round=k,
                                   warmup=base.warmup if warmup is None else warmup)

    def validate(self) -> None:
        for name in ("rounds", "runs_per_round"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"steady estimator: {name} must be a positive integer, got {v!r}.")
        for name in ("warmup", "retries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InputError(f"steady estimator: {name} must be a non-negative integer, got {v!r}.")
        if not 0.0 <= self.quantile <= 0.5:
            raise InputError(f"steady estimator: quantile must be in [0, 0.5], got {self.quantile!r}.")
        if not self.max_spread_pct > 0:
            raise InputError(f"steady estimator: max_spread_pct must be > 0, got {self.max_spread_pct!r}.")


@dataclass(frozen=True)
class SteadyLatency:
    """One candidate's steady latency.

    Attributes:
        ms: The steady figure (``quantile`` of the round medians), ms.
        median_ms: The median of the round medians, ms.
        spread_pct: (q90 - q10) / q50 of the round medians, %.
        rounds: Round medians that went into it.
        round_medians: The round medians, ms, in round order.
        estimator: ``ESTIMATOR`` (with the quantile).
    """

    ms: float
    median_ms: float
    spread_pct: float
    rounds: int
    round_medians: tuple[float, ...]
    estimator: str = ESTIMATOR

    def to_json(self, *, with_rounds: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["round_medians"] = list(self.round_medians) if with_rounds else None
        if not with_rounds:
            d.pop("round_medians")
        return d


@dataclass(frozen=True)
class SideBySide:
    """The result of one side-by-side measurement.

    Attributes:
        latency: Steady latency per candidate.
        reference: The reference candidate's name, or None.
        ratio: Per candidate, the median over rounds of (candidate round median / reference round
            median); None without a reference.
        ratio_spread_pct: (q90 - q10) / q50 of those per-round ratios, %.
        attempts: Attempts made (1 + re-measurements); the figures are over all their rounds.
        unstable: Even the last attempt spread beyond ``max_spread_pct``.
        settings: The estimator settings.
        runs: Per candidate, the timed runs of all attempts, ms, one tuple per round (raw samples:
            the table-entry statistics and other estimators are computed from them); None when
            only round medians were given (``side_by_side``).
    """

    latency: dict[str, SteadyLatency]
    reference: str | None
    ratio: dict[str, float] | None
    ratio_spread_pct: dict[str, float] | None
    attempts: int
    unstable: bool
    settings: SteadySettings = field(default_factory=SteadySettings)
    runs: dict[str, tuple[tuple[float, ...], ...]] | None = None

    @property
    def remeasured(self) -> bool:
        return self.attempts > 1

    def worst_spread_pct(self) -> float:
        return max((s.spread_pct for s in self.latency.values()), default=0.0)

    def entry(self, name: str) -> dict[str, Any]:
        """One candidate's latency-table entry: the contract statistics over all its timed runs
        (``median_ms``, ``mean_ms``, ``std_ms``, ``p10_ms``, ``p90_ms``, ``count``) plus the steady
        figure (``steady_ms``), ``spread_pct``, ``estimator``, ``rounds``, ``runs_per_round``,
        ``attempts`` and ``unstable``. Needs ``runs`` (a measured result)."""
        if self.runs is None:
            raise ValueError("no raw runs: entry() needs a measured SideBySide")
        return steady_entry(self.runs[name], quantile=self.settings.quantile,
                            extra={"attempts": self.attempts, "unstable": self.unstable})


def steady_figure(round_medians: Sequence[float], *, quantile: float = DEFAULT_QUANTILE) -> float:
    """The steady figure of round medians: their ``quantile`` (linear interpolation), ms.

    Example: round medians [1.0, 1.0, 1.4, 1.4] (a fast and a 1.4× slow state, half the time
    each) give 1.0 at quantile 0.25.
    """
    v = np.asarray(round_medians, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no round medians")
    return float(np.quantile(v, quantile))


def spread_pct(values: Sequence[float]) -> float:
    """(q90 - q10) / q50 of ``values``, in % (0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return 0.0
    q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
    return float(100.0 * (q90 - q10) / q50) if q50 > 0 else float("inf")


def summarize(round_medians: Sequence[float], *, quantile: float) -> SteadyLatency:
    """A candidate's ``SteadyLatency`` from its round medians (ms)."""
    v = [float(x) for x in round_medians]
    return SteadyLatency(ms=steady_figure(v, quantile=quantile), median_ms=float(np.median(v)),
                         spread_pct=spread_pct(v), rounds=len(v), round_medians=tuple(v),
                         estimator=estimator_name(quantile))


def group_rounds(samples: Sequence[float], *, runs_per_round: int) -> list[tuple[float, ...]]:
    """Consecutive samples in rounds of ``runs_per_round`` (a last, shorter group joins the one before).

    Example: 7 samples in rounds of 3 give rounds of 3 and 4 samples.
    """
    v = [float(x) for x in samples]
    k = max(1, int(runs_per_round))
    n = max(1, len(v) // k)
    return [tuple(v[i * k:(i + 1) * k if i < n - 1 else len(v)]) for i in range(n)] if v else []


def steady_entry(runs: Sequence[Sequence[float]], *, quantile: float,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A latency-table entry from timed runs grouped by round (ms): the contract statistics over
    all runs (``hwnas.latency.entry_from_samples``) plus ``steady_ms`` (``quantile`` of the round
    medians), ``spread_pct``, ``estimator``, ``rounds`` and ``runs_per_round`` (of the first round)."""
    from hwnas.latency import entry_from_samples

    flat = [float(x) for r in runs for x in r]
    if not flat:
        raise ValueError("no timed runs")
    lat = summarize([float(np.median(r)) for r in runs], quantile=quantile)
    return {**entry_from_samples(flat), "steady_ms": lat.ms, "spread_pct": lat.spread_pct,
            "estimator": lat.estimator, "rounds": lat.rounds, "runs_per_round": len(runs[0]), **(extra or {})}


def side_by_side(rounds: Mapping[str, Sequence[float]], *, settings: SteadySettings,
                 reference: str | None = None, attempts: int = 1) -> SideBySide:
    """Summarizes interleaved round medians (same round index = same round) of several candidates."""
    lat = {k: summarize(v, quantile=settings.quantile) for k, v in rounds.items()}
    ratio = spread = None
    if reference is not None:
        if reference not in rounds:
            raise KeyError(reference)
        ref = np.asarray(rounds[reference], dtype=np.float64)
        ratio, spread = {}, {}
        for k, v in rounds.items():
            r = np.asarray(v, dtype=np.float64) / ref  # per round
            ratio[k] = float(np.median(r))
            spread[k] = spread_pct(r)
    unstable = any(s.spread_pct > settings.max_spread_pct for s in lat.values())
    return SideBySide(latency=lat, reference=reference, ratio=ratio, ratio_spread_pct=spread, attempts=attempts,
                      unstable=unstable, settings=settings)


def measure_side_by_side(runners: Mapping[str, Runner], *, backend: Backend, settings: SteadySettings,
                         reference: str | None = None, seed: int = 0) -> SideBySide:
    """Times prepared runners side by side with the steady estimator (see the module docstring).

    Args:
        runners: Prepared runners by candidate name (all on ``backend``).
        backend: Their backend (its ``timing_context`` is held while timing).
        settings: Rounds, runs per round, warm-up, quantile, instability limit and retries.
        reference: A candidate that the others are compared with per round (e.g. ``mobilenet_v2``).
        seed: Seeds the round orders.

    Returns:
        The steady latency of every candidate, and their ratios to ``reference``.
    """
    settings.validate()
    if not runners:
        raise InputError("nothing to measure.")
    rng = np.random.default_rng(seed)
    names = list(runners)
    runs: dict[str, list[tuple[float, ...]]] = {k: [] for k in names}  # every attempt's rounds, ms
    unstable = True
    with backend.timing_context(), gc_paused():
        for name in names:
            for _ in range(settings.warmup):
                runners[name].run_once()
        for attempt in range(1, settings.retries + 2):
            order = list(names)
            for _ in range(settings.rounds):
                rng.shuffle(order)
                for k in order:
                    r = runners[k]
                    if len(names) > 1:
                        r.run_once()  # warms the candidate after the others ran (alone it is still warm)
                    runs[k].append(tuple(r.run_once() for _ in range(settings.runs_per_round)))  # ms
            latest = {k: [float(np.median(v)) for v in rs[-settings.rounds:]] for k, rs in runs.items()}
            unstable = side_by_side(latest, settings=settings).unstable
            if not unstable:
                break
    rounds = {k: [float(np.median(v)) for v in rs] for k, rs in runs.items()}
    result = side_by_side(rounds, settings=settings, reference=reference, attempts=attempt)
    return dataclasses.replace(result, unstable=unstable, runs={k: tuple(v) for k, v in runs.items()})


