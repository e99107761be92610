"""Backend interface and registry.

A backend turns a module (or an ONNX file) into a ``Runner`` (exported, compiled or pushed once),
whose ``run_once`` performs one timed inference and returns milliseconds. Profiling
(``hwnas.profile.profiler``) interleaves ``run_once`` calls across many runners; end-to-end
measurement (``measure_module``, ``measure_onnx_file``) times one runner repeatedly.
``BackendConfig`` is everything that changes the numbers; its settings round-trip through a latency
table's ``device`` header, so validation and export re-measure with the table's own settings. The
header records what measured the table, never a command: a ``remote`` device's command templates
come only from the user (``hwnas.profile.device_config``).

Backends (``--backend``): ``ort-cpu`` (ONNX Runtime, CPU provider), ``torch-cpu`` (PyTorch eager),
``cuda`` (PyTorch on a CUDA GPU, CUDA events) and ``remote`` (a phone or board reached by
user-given push/run command templates, e.g. adb or ssh).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import platform
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import numpy as np
import torch

from hwnas.errors import InputError
from hwnas.latency import COMMAND_FIELDS
from hwnas.profile.device_config import RemoteCommands
from hwnas.safeio import short


@dataclass(frozen=True)
class BackendConfig:
    """Settings of a measurement backend (all of them recorded in a table's ``device`` header).

    Attributes:
        backend: Registered backend name (``ort-cpu``, ``torch-cpu``, ``cuda``, ``remote``).
        threads: Intra-op threads (ONNX Runtime ``intra_op_num_threads``, ``torch.set_num_threads``).
        batch: Batch size of the timed inputs.
        dtype: ``float32`` (every backend) or ``float16`` (``cuda``).
        channels_last: NHWC memory format (``torch-cpu``, ``cuda``).
        device_name: The table's ``device.name``; default ``<host>-<backend>``.
        push_cmd: ``remote``: command template run once per model, e.g. ``adb push {model} /data/local/tmp/``
            (from the user; never written to or read from a table).
        run_cmd: ``remote``: command template run once per sample, printing the tool's timing (from the user).
        parser: ``remote``: output parser (``hwnas.profile.parsers``), e.g. ``ort-perf-test`` (recorded).
        info_cmd: ``remote``: optional command whose output names the device's processor
            (e.g. ``adb shell getprop ro.soc.model``), recorded as ``device.processor`` (from the user).
        serial: ``remote``: the device's serial number (recorded as ``device.serial``).
    """

    backend: str = "ort-cpu"
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    channels_last: bool = False
    device_name: str = ""
    push_cmd: str = ""
    run_cmd: str = ""
    parser: str = ""
    info_cmd: str = ""
    serial: str = ""

    def header(self) -> dict[str, Any]:
        """The table ``device`` header fields for this config (without host/processor/versions).

        Command templates are left out: a table records what measured it, not how to run anything.
        """
        d = {k: v for k, v in asdict(self).items() if k not in COMMAND_FIELDS}
        d["name"] = d.pop("device_name") or f"{platform.node() or 'host'}-{self.backend}"
        return {k: v for k, v in d.items() if v not in ("", None) or k in ("name",)}

    @classmethod
    def from_header(cls, device: dict[str, Any], *, commands: RemoteCommands | None,
                    origin: str = "the latency table") -> "BackendConfig":
        """The config a table was measured with: its recorded settings plus the user's commands.

        Args:
            device: The table's ``device`` header; command fields in it are ignored.
            commands: The user's remote-device commands (``--device-config`` or flags), or None.
            origin: Names the table in messages.

        Raises:
            InputError: for a ``remote`` table without ``commands`` (hwnas never runs a table's commands).
        """
        settings = {f.name for f in fields(cls)} - set(COMMAND_FIELDS) - {"device_name", "parser", "serial"}
        kw: dict[str, Any] = {k: v for k, v in device.items() if k in settings}
        if isinstance(device.get("name"), str):
            kw["device_name"] = device["name"]
        config = cls(**kw)
        if device.get("backend") != "remote":
            return config
        if commands is None:
            raise InputError(remote_needs_commands(origin))
        config = config.with_commands(commands)
        if not config.serial and isinstance(device.get("serial"), str):
            config = dataclasses.replace(config, serial=device["serial"])
        return config

    def with_commands(self, commands: RemoteCommands | None) -> "BackendConfig":
        """This config with the user's remote-device commands, parser and serial (None: unchanged)."""
        if commands is None:
            return self
        return dataclasses.replace(self, push_cmd=commands.push_cmd, run_cmd=commands.run_cmd,
                                   info_cmd=commands.info_cmd, parser=commands.parser, serial=commands.serial)


def remote_needs_commands(origin: str) -> str:
    """The sentence for a ``remote`` table measured without the user's commands."""
    return (f"{origin} was measured on a remote device, and hwnas never runs commands from a file: pass "
            f"--device-config FILE (or --run-cmd and --parser) to measure on that device.")


class Runner(ABC):
    """A prepared model on a backend."""

    @abstractmethod
    def run_once(self) -> float:
        """One timed inference, ms."""

    def close(self) -> None:
        """Releases resources (sessions, files)."""


class Backend(ABC):
    """A way to run and time models on a device.

    Class attributes:
        dtypes: The ``BackendConfig.dtype`` values the backend supports.
        runs_onnx: Whether it times ONNX files (``prepare_onnx``); the profiler then exports every
            block first (cached, resumable) and times afterwards.
        averages_runs: Whether the profiler may average back-to-back runs into one sample
            (``min_sample_ms``); off where one run is already an average (``remote``).
    """

    dtypes: tuple[str, ...] = ("float32",)
    runs_onnx: bool = False
    averages_runs: bool = True

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    def check_available(self) -> None:
        """Raises ``InputError`` when the backend cannot run here (e.g. no GPU) or is misconfigured."""

    def validate(self) -> None:
        """Checks the generic settings (threads, batch, dtype); raises ``InputError`` naming the flag."""
        c = self.config
        if isinstance(c.threads, bool) or not isinstance(c.threads, int) or c.threads < 1:
            raise InputError(f"--threads must be a positive integer, got {short(c.threads)}.")
        if isinstance(c.batch, bool) or not isinstance(c.batch, int) or c.batch < 1:
            raise InputError(f"--batch must be a positive integer, got {short(c.batch)}.")
        if not isinstance(c.channels_last, bool):
            raise InputError(f"channels_last must be true or false, got {short(c.channels_last)}.")
        if c.dtype not in self.dtypes:
            raise InputError(f"--dtype {short(c.dtype)} is not supported by backend {c.backend} "
                             f"(supported: {', '.join(self.dtypes)}).")

    def versions(self) -> dict[str, str]:
        """Versions of the libraries that change the numbers."""
        return {"torch": torch.__version__}

    def processor(self) -> str:
        return processor_name()

    def header(self) -> dict[str, Any]:
        """The complete ``device`` header of a table measured with this backend."""
        return {**self.config.header(), "host": socket.gethostname(), "processor": self.processor(),
                "versions": self.versions()}

    def timing_context(self) -> ContextManager[None]:
        """Process-wide settings held while timing (e.g. torch's thread count), restored on exit."""
        return contextlib.nullcontext()

    @abstractmethod
    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        """Prepares ``module`` for timing with inputs of ``input_shape`` (N, C, H, W)."""

    def prepare_onnx(self, path: Path, input_shape: Sequence[int], *, name: str) -> Runner:
        """Prepares an existing ONNX file for timing (backends with ``runs_onnx`` only)."""
        raise InputError(f"backend {self.config.backend} runs PyTorch modules and cannot time an ONNX file; "
                         "use ort-cpu or remote.")


BACKENDS: dict[str, Callable[[BackendConfig], Backend]] = {}


def register_backend(name: str):
    """Registers a backend class under ``name`` (``--backend`` value)."""

    def deco(cls):
        BACKENDS[name] = cls
        return cls

    return deco


def processor_name() -> str:
    """This machine's CPU model (``/proc/cpuinfo``'s model name, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector while timing (as ``timeit`` does); restores it after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def timed(fn: Callable[[], Any]) -> float:
    """Wall time of one call, ms (``perf_counter``)."""
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def random_input(input_shape: Sequence[int], *, seed: int = 0) -> np.ndarray:
    """A deterministic float32 input of ``input_shape``."""
    return np.random.default_rng(seed).standard_normal(tuple(input_shape), dtype=np.float32)


def onnx_versions() -> dict[str, str]:
    """Versions of the export toolchain that shapes the ONNX graphs (torch, onnx, opset)."""
    import onnx

    from hwnas.profile.onnx_io import OPSET

    return {"torch": torch.__version__, "onnx": onnx.__version__, "opset": str(OPSET)}


def cpu_count() -> int:
    return os.cpu_count() or 1
