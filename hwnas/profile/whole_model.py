"""Timing whole architectures end to end on a latency table's device, resumably.

``measure_archs`` builds, exports and times architectures interleaved in chunks; a
``MeasurementStore`` keeps each result in a JSON file as it finishes, so an interrupted
``hwnas latency validate`` / ``calibrate`` or a measured MnasNet search resumes there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hwnas.errors import InputError
from hwnas.jsonio import read_json, write_json_atomic
from hwnas.latency import LatencyTable, entry_from_samples
from hwnas.safeio import short
from hwnas.space import arch_id

STORE_FORMAT = "hwnas.e2e_measurements/1"


#: Backend settings that must agree for stored measurements to be reused.
STORE_SETTINGS = ("backend", "threads", "batch", "dtype", "channels_last", "name", "host", "processor", "versions")


class MeasurementStore:
    """End-to-end measurements keyed by architecture, persisted atomically after each one (resume).

    Args:
        path: JSON file, or None to keep measurements in memory only.
        device: The table's ``device`` header; a file measured with other settings is refused.
        repeats: Timed runs per pass (part of the settings a file must share).
        warmup: Untimed runs per pass.
    """

    def __init__(self, path: str | Path | None, *, device: dict[str, Any], repeats: int, warmup: int) -> None:
        self.path = Path(path) if path else None
        self.settings = {**{k: device.get(k) for k in STORE_SETTINGS if k in device},
                         "repeats": repeats, "warmup": warmup}
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            raw = read_json(self.path, what="measurements file")
            if (not isinstance(raw, dict) or raw.get("format") != STORE_FORMAT
                    or not isinstance(raw.get("entries"), dict)):
                raise InputError(f"measurements file {self.path}: format must be {STORE_FORMAT!r}.")
            if raw.get("settings") != self.settings:
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
                  desc: str = "measuring", progress: bool = True) -> list[float]:
    """Builds, exports and measures each architecture end to end; median ms each (stored ones reused).

    Each model is timed as ``measure_module`` (and so ``hwnas export``) times it: with the table's
    backend settings, ``warmup`` untimed runs, then ``repeats`` consecutive timed runs, warm, as a
    deployed model runs. To keep drift and background load from biasing one model against another,
    ``chunk`` models are prepared (exported) before any is timed, and they are timed in ``passes``
    passes, each in a freshly shuffled order; the median is over all ``passes × repeats`` samples.
    A ``remote`` table is measured with the user's ``commands`` (``RemoteCommands``), never its own.
    """
    import tempfile

    import torch
    from tqdm import tqdm

    from hwnas.profile.backend import BackendConfig
    from hwnas.profile.measure import make_backend
    from hwnas.space import build_model

    if passes < 1 or chunk < 1:
        raise InputError(f"passes and chunk must be >= 1, got {passes} and {chunk}.")
    config = BackendConfig.from_header(table.device, commands=commands, origin=f"latency table {table.path}")
    keys = [arch_id(space, a) for a in archs]
    first: dict[str, int] = {}  # key → index of its first arch
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    pending = [i for k, i in first.items() if store.get(k) is None]
    rng = np.random.default_rng(seed)
    bar = tqdm(total=len(pending), desc=desc, unit="arch", file=sys.stderr, disable=not progress, leave=False)
    backend = make_backend(config) if pending else None
    try:
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            runners = {}
            samples: dict[str, list[float]] = {}
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    for i in part:  # prepare (export) everything before timing anything
                        torch.manual_seed(0)
                        model = build_model(space.resolve(archs[i]))
                        r = archs[i]["resolution"]
                        runners[keys[i]] = backend.prepare(model, (config.batch, 3, r, r), workdir=Path(tmp),
                                                           name=f"arch{i}")
                        samples[keys[i]] = []
                    order = list(runners)
                    with backend.timing_context():
                        for _ in range(passes):
                            rng.shuffle(order)
                            for k in order:
                                for _ in range(warmup):
                                    runners[k].run_once()
                                samples[k] += [runners[k].run_once() for _ in range(repeats)]  # ms
                finally:
                    for runner in runners.values():
                        runner.close()
            for k, v in samples.items():
                store.put(k, entry_from_samples(v))
            bar.update(len(part))
    finally:
        bar.close()
    return [float(store.get(k)["median_ms"]) for k in keys]


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


def table_measure(space, *, table: LatencyTable, store: MeasurementStore, repeats: int, warmup: int, seed: int,
                  commands: Any = None, progress: bool = True) -> Callable[[Sequence[dict[str, Any]], str], list[float]]:
    """``measure_archs`` on the table's device as a function of (archs, progress label), for
    ``hwnas.latency.validate.validate`` and ``calibrate``; checks now that the device can be measured
    (a ``remote`` table only with the user's ``commands``, ``RemoteCommands``)."""
    check_measurable(table, commands=commands)

    def measure(archs: Sequence[dict[str, Any]], desc: str) -> list[float]:
        return measure_archs(space, archs, table=table, store=store, repeats=repeats, warmup=warmup,
                             commands=commands, seed=seed, desc=desc, progress=progress)

    return measure

