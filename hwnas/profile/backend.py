"""Backend interface and registry.

A backend turns a module into a ``Runner`` (exported, compiled or pushed once), whose ``run_once``
performs one timed inference and returns milliseconds. Profiling interleaves ``run_once`` calls
across many runners; end-to-end measurement (``measure_module``) times one runner repeatedly.
``BackendConfig`` is everything that changes the numbers; it round-trips through a latency table's
``device`` header, so validation and export re-measure with the table's own settings.
"""

from __future__ import annotations

import os
import platform
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.latency.table import entry_from_samples


@dataclass(frozen=True)
class BackendConfig:
    """Settings of a measurement backend (all of them recorded in a table's ``device`` header)."""

    backend: str = "ort-cpu"
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    channels_last: bool = False
    device_name: str = ""
    push_cmd: str = ""
    run_cmd: str = ""
    parser: str = ""

    def header(self) -> dict[str, Any]:
        """The table ``device`` header fields for this config (without host/processor/versions)."""
        d = asdict(self)
        d["name"] = d.pop("device_name") or f"{platform.node() or 'host'}-{self.backend}"
        return {k: v for k, v in d.items() if v not in ("", None) or k in ("name",)}

    @classmethod
    def from_header(cls, device: dict[str, Any]) -> "BackendConfig":
        """Rebuilds the config a table was measured with from its ``device`` header."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in device.items() if k in known}
        if "name" in device:
            kw["device_name"] = device["name"]
        return cls(**kw)


class Runner(ABC):
    """A prepared model on a backend."""

    @abstractmethod
    def run_once(self) -> float:
        """One timed inference, ms."""

    def close(self) -> None:
        """Releases resources (sessions, files)."""


class Backend(ABC):
    """A way to run and time models on a device."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    def check_available(self) -> None:
        """Raises ``InputError`` when the backend cannot run here (e.g. no GPU)."""

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that change the numbers."""
        return {"torch": torch.__version__}

    def processor(self) -> str:
        return _processor_name()

    def header(self) -> dict[str, Any]:
        """The complete ``device`` header of a table measured with this backend."""
        return {**self.config.header(), "host": socket.gethostname(), "processor": self.processor(),
                "versions": self.versions()}

    @abstractmethod
    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        """Prepares ``module`` for timing with inputs of ``input_shape`` (N, C, H, W)."""


BACKENDS: dict[str, Callable[[BackendConfig], Backend]] = {}


def register_backend(name: str):
    """Registers a backend class under ``name`` (``--backend`` value)."""

    def deco(cls):
        BACKENDS[name] = cls
        return cls

    return deco


def make_backend(config: BackendConfig) -> Backend:
    """The backend for a config; unknown names and unavailable backends raise ``InputError``."""
    from hwnas.profile import backends_builtin  # noqa: F401  (registers the built-in backends)

    if config.backend not in BACKENDS:
        raise InputError(f"--backend {config.backend!r} is unknown (backends: {', '.join(sorted(BACKENDS))}).")
    backend = BACKENDS[config.backend](config)
    backend.check_available()
    return backend


def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_module(module: torch.nn.Module, *, input_shape: Sequence[int], config: BackendConfig,
                   repeats: int = 30, warmup: int = 5, workdir: str | Path | None = None) -> dict[str, Any]:
    """Measures one whole module end to end with a backend: warm-up, then ``repeats`` timed runs.

    Returns:
        The latency-table entry statistics (``median_ms``, ``mean_ms``, ``std_ms``, ``p10_ms``,
        ``p90_ms``, ``count``).
    """
    backend = make_backend(config)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        runner = backend.prepare(module, input_shape, workdir=Path(tmp), name="model")
        try:
            for _ in range(warmup):
                runner.run_once()
            samples = [runner.run_once() for _ in range(repeats)]
        finally:
            runner.close()
    return entry_from_samples(samples)


def timed(fn: Callable[[], Any]) -> float:
    """Wall time of one call, ms (``perf_counter``)."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def random_input(input_shape: Sequence[int], *, seed: int = 0) -> np.ndarray:
    """A deterministic float32 input of ``input_shape``."""
    return np.random.default_rng(seed).standard_normal(tuple(input_shape), dtype=np.float32)


def cpu_count() -> int:
    return os.cpu_count() or 1
