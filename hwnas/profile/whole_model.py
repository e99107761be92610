"""Timing whole architectures end to end on a latency table's device, resumably.

``measure_archs`` builds, exports and times architectures side by side in chunks with the steady
estimator (``hwnas.profile.steady``); a ``MeasurementStore`` keeps each result in a JSON file as it
finishes, so an interrupted ``hwnas latency validate`` / ``calibrate`` or a measured MnasNet search
resumes there.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from hwnas.errors import InputError
from hwnas.jsonio import read_json, write_json_atomic
from hwnas.latency import LatencyTable
from hwnas.profile.backend import Runner
from hwnas.profile.steady import SideBySide, SteadySettings, measure_side_by_side
from hwnas.safeio import short
from hwnas.space import arch_id

STORE_FORMAT = "hwnas.e2e_measurements/2"
#: Earlier formats, refused with a sentence that says why (their numbers came from another estimator).
OLD_STORE_FORMATS = {"hwnas.e2e_measurements/1": "one median over all runs, before the steady estimator"}


#: Architectures timed together in one interleaved session by ``latency validate``/``calibrate``.
#: Exporting a model takes seconds and timing it a fraction of one, so consecutive chunks are timed
#: a minute or more apart, in whatever state the machine is then; in one chunk every model shares
#: the same rounds. Measured (``benchmarks/latency_accuracy.py``, 32 px): with chunks of 10 the
#: chunks' mean prediction errors moved between -5.7% and +6.9% and 57% of 100 archs were within
#: ±10% (RESULTS.md).
DEFAULT_CHUNK = 50

#: Backend settings that must agree for stored measurements to be reused.
STORE_SETTINGS = ("backend", "threads", "batch", "dtype", "channels_last", "name", "host", "processor", "versions")


def whole_model_settings(*, repeats: int, warmup: int, passes: int = 3, rounds: int | None = None,
                         runs_per_round: int | None = None) -> SteadySettings:
    """The estimator settings of ``measure_archs``: ``rounds`` x ``runs_per_round`` when given, else
    from the older counts, ``passes x repeats`` timed runs per architecture
    (``SteadySettings.from_counts``: 3 x 30 -> 18 rounds x 5 runs)."""
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise InputError(f"passes must be an integer >= 1, got {passes!r}.")
    total = repeats * passes if isinstance(repeats, int) and not isinstance(repeats, bool) and repeats > 0 else repeats
    return SteadySettings.from_counts(repeats=total, warmup=warmup, rounds=rounds, runs_per_round=runs_per_round)


class MeasurementStore:
    """End-to-end measurements keyed by architecture, persisted atomically after each one (resume).

    The file records the device settings and the steady estimator (name and settings) that produced
    its numbers; a file from another estimator or an older format is refused (``InputError``).

    Args:
        path: JSON file, or None to keep measurements in memory only.
        device: The table's ``device`` header; a file measured with other settings is refused.
        repeats: Timed runs per architecture and pass (with ``warmup``, the estimator settings when
            ``steady`` is None: ``whole_model_settings``).
        warmup: Untimed runs per architecture first.
        steady: The estimator settings (rounds, runs per round, quantile, ...).
    """

    def __init__(self, path: str | Path | None, *, device: dict[str, Any], repeats: int, warmup: int,
                 steady: SteadySettings | None = None) -> None:
        self.path = Path(path) if path else None
        self.steady = steady or whole_model_settings(repeats=repeats, warmup=warmup)
        self.steady.validate()
        self.settings = {**{k: device.get(k) for k in STORE_SETTINGS if k in device},
                         "repeats": repeats, "warmup": warmup, "estimator": self.steady.to_json()}
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            raw = read_json(self.path, what="measurements file")
            fmt = raw.get("format") if isinstance(raw, dict) else None
            if isinstance(fmt, str) and fmt in OLD_STORE_FORMATS:
                raise InputError(f"measurements file {self.path} has format {fmt!r} ({OLD_STORE_FORMATS[fmt]}); "
                                 f"its numbers are not comparable: delete it or use another --measurements file.")
            if fmt != STORE_FORMAT or not isinstance(raw.get("entries"), dict):
                raise InputError(f"measurements file {self.path}: format must be {STORE_FORMAT!r}.")
            old = raw.get("settings") if isinstance(raw.get("settings"), dict) else {}
            if old.get("estimator") != self.settings["estimator"]:
                name = (old.get("estimator") or {}).get("name") if isinstance(old.get("estimator"), dict) else None
                raise InputError(f"measurements file {self.path} was measured with another estimator "
                                 f"({short(name)}, or other rounds/runs per round) than this run "
                                 f"({self.steady.name}, {self.steady.rounds} rounds x {self.steady.runs_per_round} "
                                 f"runs); use another --measurements file.")
            if old != self.settings:
                raise InputError(f"measurements file {self.path} was measured with other settings (device "
                                 "or repeats/warmup) than this run; use another --measurements file.")
            self.entries = raw["entries"]

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Adds a measurement and rewrites the file (atomically)."""
        self.entries[key] = entry
        if self.path is not None:
            write_json_atomic(self.path, {"format": STORE_FORMAT, "settings": self.settings,
                                          "entries": self.entries}, indent=None)


def measure_archs(space, archs: Sequence[dict[str, Any]], *, table: LatencyTable, store: MeasurementStore,
                  repeats: int, warmup: int, commands: Any = None, passes: int = 3, chunk: int = 10, seed: int = 0,
                  desc: str = "measuring", progress: bool = True,
                  settings: SteadySettings | None = None) -> list[float]:
    """Builds, exports and measures each architecture end to end on the table's device
    (``time_archs`` with the table's backend settings); the steady figure (ms) of each.

    A ``remote`` table is measured with the user's ``commands`` (``RemoteCommands``), never its own.

    Args:
        settings: The estimator settings; None: ``whole_model_settings(repeats, warmup, passes)``.
            They must be the store's (``MeasurementStore.steady``).

    Raises:
        ValueError: when the settings differ from the store's (a programming error).
    """
    from hwnas.profile.backend import BackendConfig

    steady = settings or whole_model_settings(repeats=repeats, warmup=warmup, passes=passes)
    if steady != store.steady:
        raise ValueError(f"measure_archs: estimator settings {steady} differ from the store's {store.steady}")
    config = BackendConfig.from_header(table.device, commands=commands, origin=f"latency table {table.path}")
    return time_archs(space, archs, config=config, store=store, chunk=chunk, seed=seed, desc=desc, progress=progress)


def time_archs(space, archs: Sequence[dict[str, Any]], *, config: Any, store: Any, chunk: int = 10, seed: int = 0,
               desc: str = "measuring", progress: bool = True, preparing: Any = None) -> list[float]:
    """Builds, exports and times architectures end to end on one backend; the steady figure (ms) of each.

    ``chunk`` models are prepared (exported) before any is timed; they are then timed side by side
    in interleaved short rounds (``measure_side_by_side``: every round runs each model
    ``runs_per_round`` times, in a freshly shuffled order), so a state switch of the machine hits all
    models of a chunk alike. Each stored entry holds the statistics over all timed runs,
    ``steady_ms`` (returned), ``spread_pct`` and ``estimator``; stored ones are reused.

    Args:
        config: The ``BackendConfig`` to time with.
        store: Keeps results by ``arch_id`` (``get``, ``put`` and the estimator settings ``steady``):
            a ``MeasurementStore`` or a ``hwnas.profile.measured_file.MeasuredFile``.
        preparing: A lock held while models are built and exported (several devices timing at once,
            ``hwnas.profile.fleet``: ``torch.export`` and the global seed are not thread-safe).
    """
    import tempfile

    import torch
    from tqdm import tqdm

    from hwnas.profile.measure import make_backend
    from hwnas.space import build_model

    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}.")
    keys = [arch_id(space, a) for a in archs]
    first: dict[str, int] = {}  # key → index of its first arch
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    pending = [i for k, i in first.items() if store.get(k) is None]
    bar = tqdm(total=len(pending), desc=desc, unit="arch", file=sys.stderr, disable=not progress, leave=False)
    backend = make_backend(config) if pending else None
    try:
        for n, start in enumerate(range(0, len(pending), chunk)):
            part = pending[start:start + chunk]
            runners = {}
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    with preparing or contextlib.nullcontext():
                        for i in part:  # prepare (export) everything before timing anything
                            torch.manual_seed(0)
                            model = build_model(space.resolve(archs[i]))
                            r = archs[i]["resolution"]
                            runners[keys[i]] = backend.prepare(model, (config.batch, 3, r, r), workdir=Path(tmp),
                                                               name=f"arch{i}")
                    result = measure_side_by_side(runners, backend=backend, settings=store.steady, seed=seed + n)
                finally:
                    for runner in runners.values():
                        runner.close()
            for k in runners:
                store.put(k, result.entry(k))
            bar.update(len(part))
    finally:
        bar.close()
    return [float(store.get(k)["steady_ms"]) for k in keys]


def default_repeats(table: LatencyTable) -> tuple[int, int]:
    """Repeats and warm-up runs of the table's profile (``device.repeats``/``warmup``), else 30 and 5."""
    return int(table.device.get("repeats") or 30), int(table.device.get("warmup") or 5)


def check_measurable(table: LatencyTable, *, commands: Any, what: str = "measuring") -> None:
    """Fails early (``InputError``) when the table's backend cannot run here (e.g. an imported or
    synthetic table, or a ``remote`` one without the user's ``commands``); ``what`` starts the message."""
    from hwnas.profile.backend import BackendConfig
    from hwnas.profile.measure import make_backend

    backend = table.device.get("backend")
    if backend in (None, "synthetic"):
        raise InputError(f"{what}: latency table {table.path} has no measurable device (device.backend "
                         f"{short(backend)}); use a table profiled with hwnas profile.")
    make_backend(BackendConfig.from_header(table.device, commands=commands, origin=f"{what}: latency table {table.path}"))


@dataclass(frozen=True)
class TableMeasure:
    """``measure_archs`` on a table's device as a function of (archs, progress label) → steady ms
    each (``hwnas.latency.validate.Measure``), and the spread of what it measured (``spreads``)."""

    space: Any
    table: LatencyTable
    store: MeasurementStore
    repeats: int
    warmup: int
    seed: int
    commands: Any = None
    progress: bool = True
    chunk: int = DEFAULT_CHUNK

    def __call__(self, archs: Sequence[dict[str, Any]], desc: str) -> list[float]:
        return measure_archs(self.space, archs, table=self.table, store=self.store, repeats=self.repeats,
                             warmup=self.warmup, commands=self.commands, seed=self.seed, desc=desc,
                             progress=self.progress, settings=self.store.steady, chunk=self.chunk)

    def spreads(self, archs: Sequence[dict[str, Any]]) -> list[float | None]:
        """The stored spread (%, ``spread_pct``) of each measured architecture (None: not measured)."""
        out: list[float | None] = []
        for a in archs:
            e = self.store.get(arch_id(self.space, a))
            out.append(None if e is None or e.get("spread_pct") is None else float(e["spread_pct"]))
        return out


def table_measure(space, *, table: LatencyTable, store: MeasurementStore, repeats: int, warmup: int, seed: int,
                  commands: Any = None, progress: bool = True, chunk: int = DEFAULT_CHUNK) -> TableMeasure:
    """``measure_archs`` on the table's device as a function of (archs, progress label), for
    ``hwnas.latency.validate.validate`` and ``calibrate``, with the store's estimator settings;
    checks now that the device can be measured (a ``remote`` table only with the user's
    ``commands``, ``RemoteCommands``); ``chunk`` architectures are timed side by side at a time."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"--chunk must be a positive integer, got {chunk!r}.")
    check_measurable(table, commands=commands)
    return TableMeasure(space=space, table=table, store=store, repeats=repeats, warmup=warmup, seed=seed,
                        commands=commands, progress=progress, chunk=chunk)


def measure_archs_side_by_side(space: Any, archs: Mapping[str, dict[str, Any]], *, config: Any,
                               settings: SteadySettings, reference: str | None = None, seed: int = 0,
                               workdir: Any = None) -> SideBySide:
    """Builds, prepares (exports) and times architectures side by side on one backend.

    Weights do not change the latency, so each model is built with seeded random weights.

    Args:
        space: The ``SearchSpace`` of the architectures.
        archs: Architecture JSON by candidate name (e.g. ``{"cand0": ..., "ref": ...}``).
        config: The ``BackendConfig`` to measure with (``BackendConfig.from_header`` of the table,
            with the user's commands for a ``remote`` device).
        settings: The estimator settings.
        reference: The name in ``archs`` that the others are compared with.
        seed: Seeds the round orders.
        workdir: Folder for the exported files (a temporary one by default).
    """
    import tempfile
    from pathlib import Path

    import torch

    from hwnas.profile.measure import make_backend
    from hwnas.space import build_model

    backend = make_backend(config)
    runners: dict[str, Runner] = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        try:
            for i, (name, arch) in enumerate(archs.items()):
                torch.manual_seed(0)
                model = build_model(space.resolve(arch))
                r = int(arch["resolution"])
                runners[name] = backend.prepare(model, (config.batch, 3, r, r), workdir=Path(tmp), name=f"m{i}")
            return measure_side_by_side(runners, backend=backend, settings=settings, reference=reference, seed=seed)
        finally:
            for runner in runners.values():
                runner.close()
