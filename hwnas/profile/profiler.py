"""Building a latency lookup table: every distinct block of one or more spaces, timed on one backend.

Protocol (what makes the numbers trustworthy on a machine that drifts):

1. **Coverage.** ``SearchSpace.all_blocks`` enumerates every block any architecture of the space
   can contain (stem, searchable layers, ``Conv_1``, pooling, classifier), at the table's
   resolution, width multiplier and class count; keys are ``hwnas.space.blocks.op_key``. Any
   architecture of the space is then predictable from the table alone.
2. **Prepare first, time afterwards.** ONNX backends export every block (in groups, cached in a work
   folder, each file written atomically: ``hwnas.profile.export_cache``) before any timing, so
   exporting never perturbs a measurement.
3. **Interleaved rounds.** Blocks are timed in chunks of ``chunk`` prepared runners. Within a chunk,
   ``warmup`` untimed rounds run first; then each of ``repeats`` rounds takes one sample of every
   block, in a freshly shuffled order, so drift and background load hit all blocks of the chunk
   alike. Chunks are drawn from a shuffled block order, so drift between chunks is not aligned with
   stages either.
   By default a sample is one run: the block runs once, after other blocks, as it does inside a
   network. ``min_sample_ms > 0`` makes a sample the mean of ``n`` back-to-back runs lasting at
   least that long (never for ``remote``, whose tool already averages its own runs); that tightens
   the spread of microsecond-scale blocks but measures them with warm caches: on the proxyless
   space at 224 px (ort-cpu, 1 thread) the sum of the medians dropped by 10-15% with 1-2 ms
   samples, away from end-to-end measurements, while single runs stayed within 6-15% below them.
4. **Steady figure and spread check.** Each entry stores median, mean, std, p10, p90 and count
   (ms) over all samples and, from the same samples in consecutive rounds of ``runs_per_round``
   (``hwnas.profile.steady``: every sample of a round comes from another interleaved pass, so a
   block still runs once after other blocks), ``steady_ms`` (the ``quantile`` of the round
   medians, what the latency model sums) and ``spread_pct`` ((q90 - q10) / q50 of them). Entries whose
   coefficient of variation (std / mean) exceeds ``max_cv`` are measured again (another
   interleaved pass over just those), at most ``remeasure`` times; the pass with the lowest CV is
   kept. Entries still above ``max_cv`` are reported as unstable.
5. **Resumable.** After every chunk the table is written atomically (temp file + rename) with the
   entries finished so far; ``resume=True`` keeps those entries and measures only the rest, after
   checking that the existing table was made with the same settings.

The table's ``device`` header records the backend settings (backend, threads, batch, dtype, ...),
host, processor, library versions, and the scope: ``spaces``, ``resolution``, ``width_mult``,
``num_classes``, plus ``repeats``, ``warmup``, ``min_sample_ms``, ``stat`` (``steady``) and
``estimator`` (name and settings: quantile, rounds, runs per round).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from hwnas.errors import InputError
from hwnas.latency import ENTRY_FIELDS, LatencyTable, entry_cv, utc_now
from hwnas.profile.backend import Backend, BackendConfig, Runner, gc_paused
from hwnas.profile.export_cache import export_blocks
from hwnas.profile.fleet import Fleet, fleet_summary
from hwnas.profile.measure import make_backend
from hwnas.profile.interleaved import measure_interleaved, runs_per_sample  # noqa: F401 - re-exported
from hwnas.profile.steady import DEFAULT_QUANTILE, SteadySettings, estimator_name, group_rounds, steady_entry
from hwnas.space import Block, SearchSpace, make_module, op_key

#: Header fields that must agree between an existing table and a resumed run.
RESUME_FIELDS = ("backend", "threads", "batch", "dtype", "channels_last", "parser", "serial",
                 "host", "processor", "versions", "resolution", "width_mult", "num_classes", "repeats", "warmup",
                 "min_sample_ms", "estimator")


@dataclass(frozen=True)
class ProfileSettings:
    """How each entry is measured.

    Attributes:
        repeats: Timed runs per entry and pass.
        warmup: Untimed runs per entry before timing.
        max_cv: Entries with a coefficient of variation above this are re-measured.
        remeasure: Extra passes at most for such entries.
        chunk: Runners prepared (sessions alive) at a time; rounds interleave within a chunk.
        seed: Seed of the block order and the per-round shuffles.
        min_sample_ms: A sample averages back-to-back runs lasting at least this long (0: single runs).
        runs_per_round: Samples per round of the steady figure (None: the largest divisor of
            ``repeats`` up to 5, ``SteadySettings.from_counts``).
        quantile: The quantile of round medians stored as ``steady_ms``.
    """

    repeats: int = 30
    warmup: int = 5
    max_cv: float = 0.05
    remeasure: int = 2
    chunk: int = 64
    seed: int = 0
    min_sample_ms: float = 0.0
    runs_per_round: int | None = None
    quantile: float = DEFAULT_QUANTILE

    def steady(self) -> SteadySettings:
        """The steady estimator's settings of the entries (rounds x runs per round = ``repeats``)."""
        s = SteadySettings.from_counts(repeats=self.repeats, warmup=self.warmup, runs_per_round=self.runs_per_round,
                                       base=SteadySettings(quantile=self.quantile))
        s.validate()
        return s

    def estimator(self) -> dict[str, Any]:
        """The table header's ``estimator``: name, quantile, rounds, runs per round (of single-run samples)."""
        s = self.steady()
        return {"name": estimator_name(self.quantile), "quantile": self.quantile, "rounds": s.rounds,
                "runs_per_round": s.runs_per_round, "samples": "interleaved single runs"
                if self.min_sample_ms <= 0 else f"means of back-to-back runs of >= {self.min_sample_ms} ms"}

    def validate(self) -> None:
        """Raises ``InputError`` naming the first bad setting."""
        for name, low in (("repeats", 1), ("warmup", 0), ("remeasure", 0), ("chunk", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"--{name} must be an integer >= {low}, got {v!r}.")
        if isinstance(self.max_cv, bool) or not isinstance(self.max_cv, (int, float)) or not self.max_cv > 0:
            raise InputError(f"--max-cv must be a positive number, got {self.max_cv!r}.")
        m = self.min_sample_ms
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m <= 1000:
            raise InputError(f"--min-sample-ms must be a number in [0, 1000], got {m!r}.")
        if self.runs_per_round is not None and (isinstance(self.runs_per_round, bool) or self.runs_per_round < 1
                                                or self.runs_per_round > self.repeats):
            raise InputError(f"--runs-per-round must be an integer in [1, --repeats], got {self.runs_per_round!r}.")
        self.steady()


@dataclass
class ProfileResult:
    """What a profiling run did (the ``hwnas profile --json`` report)."""

    out: str
    table: LatencyTable
    measured: list[str] = field(default_factory=list)
    skipped: int = 0
    exported: int = 0
    remeasured: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    export_seconds: float = 0.0
    timing_seconds: float = 0.0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        cvs = np.array([entry_cv(e) for e in self.table.entries.values()], dtype=np.float64)
        stat = (lambda f: round(float(f(cvs)), 5)) if cvs.size else (lambda f: None)
        spreads = [float(e["spread_pct"]) for e in self.table.entries.values() if e.get("spread_pct") is not None]
        return {
            "out": self.out, "entries": len(self.table), "measured": len(self.measured), "skipped": self.skipped,
            "exported": self.exported, "seconds": round(self.seconds, 3),
            "export_seconds": round(self.export_seconds, 3), "timing_seconds": round(self.timing_seconds, 3),
            "cv_median": stat(np.median), "cv_p90": stat(lambda a: np.percentile(a, 90)), "cv_max": stat(np.max),
            "remeasured": len(self.remeasured), "unstable": self.unstable,
            "estimator": self.table.device.get("estimator"),
            "median_spread_pct": round(float(np.median(spreads)), 3) if spreads else None,
            "cv": {k: round(entry_cv(e), 5) for k, e in self.table.entries.items()},
            "load_avg": _load_avg(), "cpus": os.cpu_count(),
            "device": self.table.device,
        }


def _load_avg() -> float | None:
    """The machine's 1-minute load average (other processes' CPU demand distorts timings)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def space_blocks(spaces: Sequence[SearchSpace], *, resolution: int, width_mult: float,
                 num_classes: int) -> dict[str, Block]:
    """Every distinct block of the spaces, by table key (first block wins a shared key)."""
    out: dict[str, Block] = {}
    for sp in spaces:
        for b in sp.all_blocks(resolution=resolution, width_mult=width_mult, num_classes=num_classes):
            k = op_key(b)
            if k is not None:
                out.setdefault(k, b)
    return out


def input_shape(block: Block, batch: int) -> tuple[int, int, int, int]:
    """Input shape of a block: N, C, H, W."""
    return (batch, block.cin, block.hw, block.hw)


def file_id(key: str) -> str:
    """A short, stable file name for a key (keys contain ':' and are long)."""
    return "b" + hashlib.sha1(key.encode()).hexdigest()[:16]


def _common(spaces: Sequence[SearchSpace], what: str, value: Any, attr: str) -> Any:
    if value is not None:
        return value
    vals = {getattr(sp.spec, attr) for sp in spaces}
    if len(vals) > 1:
        raise InputError(f"the spaces have different default {what}s ({sorted(vals)}); pass --{what.replace('_', '-')}.")
    return vals.pop()


def profile_table(spaces: Sequence[SearchSpace], *, config: BackendConfig, out: str | Path,
                  resolution: int | None = None, width_mult: float = 1.0, num_classes: int | None = None,
                  settings: ProfileSettings = ProfileSettings(), resume: bool = False,
                  workdir: str | Path | None = None, progress: bool = True,
                  fleet: Fleet | None = None) -> ProfileResult:
    """Profiles every distinct block of ``spaces`` into the latency table ``out``.

    Args:
        spaces: Search spaces to cover (one table can serve several).
        config: Backend settings.
        out: Table file; refused when it exists unless ``resume``.
        resolution: Input resolution, pixels (default: the spaces' common default).
        width_mult: Width multiplier of the architectures the table serves.
        num_classes: Classes of the classifier (default: the spaces' common default).
        settings: Measurement protocol.
        resume: Keep the entries of an existing ``out`` (same settings) and measure the rest.
        workdir: Folder for exported models (default ``<out>.work``, removed when complete).
        progress: Show tqdm bars on stderr.
        fleet: Several devices of one kind measuring at once (``hwnas.profile.fleet``; ``config``'s
            settings with each device's commands); None: ``config``'s one device.

    Returns:
        A ``ProfileResult``; the complete table is at ``out``.
    """
    t_start = time.perf_counter()
    settings.validate()
    if not spaces:
        raise InputError("--space: give at least one search space to profile.")
    resolution = _common(spaces, "resolution", resolution, "resolution")
    num_classes = _common(spaces, "num_classes", num_classes, "num_classes")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise InputError(f"--resolution must be an integer >= 8, got {resolution!r}.")
    if not 0.05 <= float(width_mult) <= 4.0:
        raise InputError(f"--width-mult must be in [0.05, 4], got {width_mult!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"--num-classes must be a positive integer, got {num_classes!r}.")
    out = Path(out)
    if out.exists() and not resume:
        raise InputError(f"--out {out} already exists; pass --resume to continue it or choose another file.")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out} is a folder; give a table file name.")
    backends = [make_backend(c) for c in (fleet.configs if fleet is not None else (config,))]
    backend = backends[0]
    header = {**backend.header(), "resolution": resolution, "width_mult": float(width_mult),
              "num_classes": num_classes, "spaces": [sp.name for sp in spaces], "stat": "steady",
              "estimator": settings.estimator(), "repeats": settings.repeats, "warmup": settings.warmup,
              "min_sample_ms": float(settings.min_sample_ms) if backend.averages_runs else 0.0}
    if fleet is not None:
        fleet.check_same_kind(backends)
        header.update(fleet.header())
    table = _start_table(out, header, resume=resume)
    blocks = space_blocks(spaces, resolution=resolution, width_mult=float(width_mult), num_classes=num_classes)
    rng = np.random.default_rng(settings.seed)
    pending = [k for k in blocks if k not in table.entries]
    rng.shuffle(pending)
    result = ProfileResult(out=str(out), table=table, skipped=len(blocks) - len(pending))
    work = Path(workdir) if workdir else out.with_name(out.name + ".work")
    paths: dict[str, Path] = {}
    if pending:
        work.mkdir(parents=True, exist_ok=True)
    if backend.runs_onnx and pending:
        t0 = time.perf_counter()
        paths, result.exported = export_blocks({k: blocks[k] for k in pending}, work, batch=config.batch,
                                               file_id=file_id, progress=progress)
        result.export_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    if fleet is None:
        _time_chunks(backend, pending, blocks, paths, table, out, work, settings, rng, result, progress=progress)
    else:
        rngs = [np.random.default_rng([settings.seed, d]) for d in range(len(backends))]
        bar = timing_bar(len(pending) + (len(backends) - 1) * min(fleet.anchors, len(pending)), settings,
                         progress=progress)

        def measure(d: int, keys: list[str]) -> dict[str, dict[str, Any]]:
            return measure_chunk(backends[d], keys, blocks, paths, work, settings, rngs[d], bar=bar,
                                 remeasured=result.remeasured)

        try:
            fleet.measure(pending, chunk=settings.chunk, measure=measure,
                          record=lambda entries: record_entries(table, entries, out, settings, result))
        finally:
            bar.close()
        table.device["fleet"] = {**table.device["fleet"], **fleet_summary(table.entries, fleet.serials)}
    result.timing_seconds = time.perf_counter() - t0
    table.save(out)
    if workdir is None and work.exists():
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.perf_counter() - t_start
    return result


def _start_table(out: Path, header: dict[str, Any], *, resume: bool) -> LatencyTable:
    if not (resume and out.exists()):
        return LatencyTable(device=header, entries={})
    table = LatencyTable.load(out)
    for f in RESUME_FIELDS:
        if table.device.get(f) != header.get(f):
            raise InputError(f"--resume: {out} was profiled with device.{f} = {table.device.get(f)!r}, "
                             f"but this run has {header.get(f)!r}; use the same settings or another --out.")
    spaces = list(dict.fromkeys(list(table.device.get("spaces", [])) + header["spaces"]))
    table.device = {**header, "name": table.device.get("name", header["name"]), "spaces": spaces}
    return table


def _prepare(backend: Backend, key: str, block: Block, paths: dict[str, Path], work: Path) -> Runner:
    shape = input_shape(block, backend.config.batch)
    if key in paths:
        return backend.prepare_onnx(paths[key], shape, name=file_id(key))
    return backend.prepare(make_module(block), shape, workdir=work, name=file_id(key))


def measure_chunk(backend: Backend, keys: list[str], blocks: dict[str, Block], paths: dict[str, Path], work: Path,
                  settings: ProfileSettings, rng: np.random.Generator, *, bar: Any = None,
                  remeasured: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Prepares the runners of ``keys`` and times them interleaved; their table entries."""
    s = settings
    runners: dict[str, Runner] = {}
    try:
        for k in keys:
            runners[k] = _prepare(backend, k, blocks[k], paths, work)
        with backend.timing_context(), gc_paused():
            samples = measure_interleaved(runners, keys, settings=s, rng=rng, bar=bar, remeasured=remeasured,
                                          average=backend.averages_runs)
    finally:
        for r in runners.values():
            r.close()
    steady = s.steady()
    out = {}
    for k in keys:
        full = steady_entry(group_rounds(samples[k], runs_per_round=steady.runs_per_round), quantile=s.quantile)
        out[k] = {f: full[f] for f in ENTRY_FIELDS + ("steady_ms", "spread_pct")}  # settings: in the header
    return out


def record_entries(table: LatencyTable, entries: dict[str, dict[str, Any]], out: Path, settings: ProfileSettings,
                   result: ProfileResult) -> None:
    """Adds finished entries to the table and writes it atomically (a kill loses at most one chunk)."""
    for k, e in entries.items():
        table.entries[k] = e
        if entry_cv(e) > settings.max_cv:
            result.unstable.append(k)
    result.measured.extend(entries)
    table.entries = dict(sorted(table.entries.items()))
    table.created = utc_now()
    table.save(out)


def timing_bar(n_keys: int, settings: ProfileSettings, *, progress: bool) -> Any:
    return tqdm(total=n_keys * (settings.warmup + settings.repeats), desc="timing", unit="run", file=sys.stderr,
                disable=not progress)


def _time_chunks(backend: Backend, pending: list[str], blocks: dict[str, Block], paths: dict[str, Path],
                 table: LatencyTable, out: Path, work: Path, settings: ProfileSettings, rng: np.random.Generator,
                 result: ProfileResult, *, progress: bool) -> None:
    bar = timing_bar(len(pending), settings, progress=progress)
    try:
        n_chunks = -(-len(pending) // settings.chunk)  # equal-sized chunks: 70 blocks, chunk 64 -> 35 + 35
        for i in range(n_chunks):
            keys = pending[i * len(pending) // n_chunks:(i + 1) * len(pending) // n_chunks]
            entries = measure_chunk(backend, keys, blocks, paths, work, settings, rng, bar=bar,
                                    remeasured=result.remeasured)
            record_entries(table, entries, out, settings, result)
    finally:
        bar.close()
