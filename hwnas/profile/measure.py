"""Making a backend from its config, and timing whole models end to end on it.

The built-in backends are registered by importing their modules, listed once here
(``BUILTIN_BACKENDS``); ``hwnas.profile.backend`` holds the registry and never imports them.
A new backend is a module that subclasses ``Backend`` with ``@register_backend(NAME)``, added to
this list.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

import hwnas.profile.cuda as cuda
import hwnas.profile.ort_cpu as ort_cpu
import hwnas.profile.remote as remote
import hwnas.profile.torch_cpu as torch_cpu
from hwnas.errors import InputError
from hwnas.latency import entry_from_samples
from hwnas.profile.backend import BACKENDS, Backend, BackendConfig, Runner, gc_paused
from hwnas.safeio import short

#: The built-in backend modules; importing them registers ``ort-cpu``, ``torch-cpu``, ``cuda``, ``remote``.
BUILTIN_BACKENDS = (ort_cpu, torch_cpu, cuda, remote)


def make_backend(config: BackendConfig) -> Backend:
    """The backend for a config; unknown names and unavailable backends raise ``InputError``."""
    if config.backend == "imported":
        raise InputError("this latency table was imported from a published table (device.backend 'imported'); "
                         "its device cannot be measured from here: profile your own device with hwnas profile.")
    if config.backend not in BACKENDS:
        raise InputError(f"--backend {short(config.backend)} is unknown (backends: {', '.join(sorted(BACKENDS))}).")
    backend = BACKENDS[config.backend](config)
    backend.validate()
    backend.check_available()
    return backend


def _check_counts(repeats: int, warmup: int) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats must be a positive integer, got {repeats!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be a non-negative integer, got {warmup!r}.")


def time_runner(backend: Backend, runner: Runner, *, repeats: int, warmup: int) -> dict[str, Any]:
    """``warmup`` untimed runs, then ``repeats`` timed runs of one runner; its entry statistics."""
    with backend.timing_context(), gc_paused():
        for _ in range(warmup):
            runner.run_once()
        samples = [runner.run_once() for _ in range(repeats)]  # ms
    return entry_from_samples(samples)


def measure_module(module: torch.nn.Module, *, input_shape: Sequence[int], config: BackendConfig,
                   repeats: int = 30, warmup: int = 5, workdir: str | Path | None = None) -> dict[str, Any]:
    """Measures one whole module end to end with a backend: warm-up, then ``repeats`` timed runs.

    Works for every backend (ONNX backends export the module first; ``remote`` pushes it to the
    device with the config's templates).

    Returns:
        The latency-table entry statistics (``median_ms``, ``mean_ms``, ``std_ms``, ``p10_ms``,
        ``p90_ms``, ``count``).
    """
    _check_counts(repeats, warmup)
    backend = make_backend(config)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        runner = backend.prepare(module, input_shape, workdir=Path(tmp), name="model")
        try:
            return time_runner(backend, runner, repeats=repeats, warmup=warmup)
        finally:
            runner.close()


def measure_onnx_file(path: str | Path, *, input_shape: Sequence[int], config: BackendConfig,
                      repeats: int = 30, warmup: int = 5) -> dict[str, Any]:
    """Measures an existing ONNX file with an ONNX-running backend (``ort-cpu``, ``remote``).

    Used to time exported (and quantized) models with a latency table's own settings.

    Raises:
        InputError: for a missing file, or a backend that cannot run ONNX files (``torch-cpu``, ``cuda``).

    Returns:
        The latency-table entry statistics, as ``measure_module``.
    """
    _check_counts(repeats, warmup)
    p = Path(path)
    backend = make_backend(config)
    if not backend.runs_onnx:
        backend.prepare_onnx(p, input_shape, name=p.stem)  # raises InputError naming the backend
    if not p.is_file():
        raise InputError(f"ONNX file {p} does not exist.")
    runner = backend.prepare_onnx(p, input_shape, name=p.stem)
    try:
        return time_runner(backend, runner, repeats=repeats, warmup=warmup)
    finally:
        runner.close()
