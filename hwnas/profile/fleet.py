"""A device fleet: several devices of one kind measured at once (e.g. three identical phones over adb).

``hwnas profile --backend remote`` and ``hwnas latency measure --backend remote`` take
``--device-config`` once per device (each file with the device's own commands and ``serial``).
The work (table entries, or architectures) is split across the devices through one shared queue of
chunks, so a faster device takes more of it; each device is driven from its own thread (the device
runs the models, the host only waits for its commands). The results go into one table (one
measurements file), written atomically after every chunk as with one device: every entry records
the ``serial`` of the device that measured it, and the header records every device's serial
(``device.serial`` "A,B,C" and ``device.fleet``).

Devices of one kind still disagree (thermal state, firmware, background load). To see by how much,
the first ``anchors`` entries are measured on every device. Such an entry records the devices'
figures (``fleet``: serial → ms), their disagreement ``disagreement_pct`` = (max − min) / median ×
100, and ``beyond_spread``: whether that disagreement exceeds the estimator's own spread (the
largest ``spread_pct`` of the devices' measurements of it, ``hwnas.profile.steady``), i.e. whether
the estimator's noise cannot explain it. Its figure is the median device's measurement. The header's
``fleet`` summary lists the entries each device measured, each device's bias (the median ratio of
its anchor figures to the merged ones) and the entries whose disagreement is beyond the spread.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

from hwnas.errors import InputError
from hwnas.profile.backend import Backend, BackendConfig
from hwnas.profile.device_config import RemoteCommands
from hwnas.profile.steady import SteadySettings
from hwnas.profile.whole_model import time_archs
from hwnas.space import arch_id

T = TypeVar("T")
#: Entries every device of a fleet measures (the disagreement check).
ANCHORS = 4

#: (device index, keys) → their entries (``steady_ms``, ``spread_pct``, ...), measured on that device.
MeasureFn = Callable[[int, list[str]], dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Fleet:
    """Devices of one kind, one ``BackendConfig`` each (the same settings, their own commands).

    Attributes:
        configs: One config per device, with its commands and distinct ``serial``.
        anchors: Entries measured on every device (the disagreement check).
    """

    configs: tuple[BackendConfig, ...]
    anchors: int = ANCHORS

    @classmethod
    def of(cls, config: BackendConfig, commands: Sequence[RemoteCommands], *, anchors: int = ANCHORS) -> "Fleet":
        """The fleet of ``commands`` (one per ``--device-config``) with ``config``'s settings.

        Raises:
            InputError: for another backend than ``remote``, or a missing or repeated serial.
        """
        if config.backend != "remote":
            raise InputError(f"--device-config was given {len(commands)} times (a device fleet), which needs "
                             f"--backend remote, not {config.backend}.")
        seen: set[str] = set()
        for c in commands:
            if not c.serial:
                raise InputError(f"{c.source}: field 'serial' is required when several devices measure at once "
                                 f"(each entry records the serial of its device).")
            if c.serial in seen:
                raise InputError(f"{c.source}: serial {c.serial!r} names another device of the fleet too; give each "
                                 f"device its own serial.")
            seen.add(c.serial)
        return cls(configs=tuple(config.with_commands(c) for c in commands), anchors=anchors)

    @property
    def serials(self) -> list[str]:
        return [c.serial for c in self.configs]

    def header(self) -> dict[str, Any]:
        """The table header's fleet fields: every serial (``serial``) and ``fleet``."""
        return {"serial": ",".join(self.serials), "fleet": {"serials": self.serials, "anchors": self.anchors}}

    def check_same_kind(self, backends: Sequence[Backend]) -> None:
        """Refuses devices whose ``--info-cmd`` names different processors (one table, one kind)."""
        names = {b.config.serial: b.processor() for b in backends if b.config.info_cmd}
        if len(set(names.values())) > 1:
            shown = "; ".join(f"{s}: {p}" for s, p in names.items())
            raise InputError(f"--device-config: the fleet's devices are of different kinds ({shown}); a table "
                             f"serves one kind of device.")

    def run(self, fn: Callable[[int], T]) -> list[T]:
        """``fn(device index)`` for every device at once, one thread each; results in device order."""
        with ThreadPoolExecutor(max_workers=len(self.configs)) as pool:
            return list(pool.map(fn, range(len(self.configs))))

    def measure(self, keys: Sequence[str], *, chunk: int, measure: MeasureFn,
                record: Callable[[dict[str, dict[str, Any]]], None]) -> None:
        """Measures ``keys`` on the fleet; ``record`` receives each finished chunk (one at a time).

        The first ``anchors`` keys are measured on every device and merged (``merge_anchor``);
        the others are split in chunks of ``chunk`` keys, which the devices take from one queue.
        """
        lock = threading.Lock()
        anchors, rest = list(keys[:self.anchors]), list(keys[self.anchors:])
        if anchors:
            per_device = self.run(lambda d: measure(d, anchors))
            record({k: merge_anchor({s: per_device[d][k] for d, s in enumerate(self.serials)}) for k in anchors})
        queue = deque(rest[i:i + chunk] for i in range(0, len(rest), chunk))

        def drain(d: int) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    part = queue.popleft()
                entries = {k: {**e, "serial": self.serials[d]} for k, e in measure(d, part).items()}
                with lock:
                    record(entries)

        self.run(drain)


def merge_anchor(per_device: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One entry from every device's measurement of it (see the module docstring).

    Example: figures {A: 1.0, B: 1.1, C: 1.3} ms, spreads 5%, 4%, 6%: the entry is B's,
    disagreement (1.3 − 1.0) / 1.1 = 27.3% > 6%, so ``beyond_spread``.
    """
    values = {s: float(e["steady_ms"]) for s, e in per_device.items()}  # ms
    order = sorted(values, key=lambda s: (values[s], s))
    mid = order[(len(order) - 1) // 2]
    spread = max(float(e.get("spread_pct") or 0.0) for e in per_device.values())  # %
    median = float(np.median(list(values.values())))
    disagreement = 100.0 * (values[order[-1]] - values[order[0]]) / median if median > 0 else 0.0
    return {**per_device[mid], "serial": mid, "fleet": values, "disagreement_pct": round(disagreement, 3),
            "beyond_spread": bool(disagreement > spread)}


def fleet_summary(entries: Mapping[str, Mapping[str, Any] | None], serials: Sequence[str]) -> dict[str, Any]:
    """What each device measured and how the devices disagree (the header's ``fleet``)."""
    done = {k: e for k, e in entries.items() if e is not None}
    anchors = {k: e for k, e in done.items() if "fleet" in e}
    bias = {}
    for s in serials:
        ratios = [e["fleet"][s] / float(e["steady_ms"]) for e in anchors.values()
                  if s in e["fleet"] and float(e["steady_ms"]) > 0]
        bias[s] = round(float(np.median(ratios)), 4) if ratios else None
    return {"serials": list(serials), "entries_per_device": {s: sum(e.get("serial") == s for e in done.values())
                                                             for s in serials},
            "anchors": len(anchors), "device_bias": bias,
            "max_disagreement_pct": max((e["disagreement_pct"] for e in anchors.values()), default=None),
            "beyond_spread": sorted(k for k, e in anchors.items() if e["beyond_spread"])}


class _Memory:
    """An in-memory store of ``time_archs`` (``get``, ``put``, ``steady``) for one device's chunk."""

    def __init__(self, steady: SteadySettings) -> None:
        self.steady, self.entries = steady, {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.entries[key] = entry


def time_archs_on_fleet(fleet: Fleet, space: Any, archs: Sequence[dict[str, Any]], *, store: Any, chunk: int,
                        seed: int = 0, desc: str = "measuring", progress: bool = True) -> list[float]:
    """``time_archs`` with the architectures split across a fleet (the first ``anchors`` on every
    device); ``store`` gets each result as it finishes. The steady figure (ms) of each arch."""
    keys = [arch_id(space, a) for a in archs]
    by_key = dict(zip(reversed(keys), reversed(list(archs))))  # the first arch of each key
    pending = [k for k in dict.fromkeys(keys) if store.get(k) is None]
    preparing = threading.Lock()  # one export at a time; the devices time in parallel

    def measure(d: int, part: list[str]) -> dict[str, dict[str, Any]]:
        mem = _Memory(store.steady)
        time_archs(space, [by_key[k] for k in part], config=fleet.configs[d], store=mem, chunk=chunk,
                   seed=seed + d, desc=f"{desc} ({fleet.serials[d]})", progress=progress, preparing=preparing)
        return mem.entries

    def record(entries: dict[str, dict[str, Any]]) -> None:
        for k, e in entries.items():
            store.put(k, e)

    fleet.measure(pending, chunk=chunk, measure=measure, record=record)
    return [float(store.get(k)["steady_ms"]) for k in keys]

