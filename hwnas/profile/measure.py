"""Making a backend from its config, and timing whole models end to end on it.

The built-in backends are registered by importing their modules, listed once here
(``BUILTIN_BACKENDS``); ``hwnas.profile.backend`` holds the registry and never imports them.
A new backend is a module that subclasses ``Backend`` with ``@register_backend(NAME)``, added to
this list.

Every end-to-end measurement uses the steady estimator (``hwnas.profile.steady``): one model's
timed runs are consecutive short rounds, its measured latency is ``steady_ms``.
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
from hwnas.profile.backend import BACKENDS, Backend, BackendConfig, Runner
from hwnas.profile.steady import SteadySettings, measure_side_by_side
from hwnas.safeio import short

#: The built-in backend modules; importing them registers ``ort-cpu``, ``torch-cpu``, ``cuda``, ``remote``.
BUILTIN_BACKENDS = (ort_cpu, torch_cpu, cuda, remote)


def make_backend(config: BackendConfig) -> Backend:
    """The backend for a config; unknown names and unavailable backends raise ``InputError``."""
    if config.backend == "imported":
        raise InputError("this latency table was imported from a published table (device.backend 'imported'); "
                         "its device cannot be measured from here: profile your own device with hwnas profile.")
    if config.backend == "external":
        raise InputError("this latency table was fitted from timings made outside hwnas (device.backend 'external'), "
                         "so hwnas cannot time its device: pass --verify 0 to search and time the exported ONNX "
                         "yourself, or refit with --backend remote and measure with --device-config.")
    if config.backend not in BACKENDS:
        raise InputError(f"--backend {short(config.backend)} is unknown (backends: {', '.join(sorted(BACKENDS))}).")
    backend = BACKENDS[config.backend](config)
    backend.validate()
    backend.check_available()
    return backend


def steady_settings(repeats: int | None, warmup: int | None, settings: SteadySettings | None) -> SteadySettings:
    """The estimator settings of one end-to-end measurement: ``settings`` when given, else the
    ``repeats`` timed runs (in rounds, ``SteadySettings.from_counts``) after ``warmup`` untimed ones;
    both None: the estimator's defaults (30 rounds x 5 runs after 5 warm-up runs)."""
    if settings is not None:
        settings.validate()
        return settings
    s = SteadySettings.from_counts(repeats=repeats, warmup=warmup)
    s.validate()
    return s


def time_runner(backend: Backend, runner: Runner, *, settings: SteadySettings) -> dict[str, Any]:
    """Times one runner in consecutive short rounds with the steady estimator; its table entry.

    Returns:
        ``SideBySide.entry``: ``median_ms`` ... ``count`` over all timed runs, plus ``steady_ms``
        (the measured latency), ``spread_pct``, ``estimator``, ``rounds``, ``runs_per_round``,
        ``attempts`` and ``unstable``.
    """
    result = measure_side_by_side({"model": runner}, backend=backend, settings=settings)
    return result.entry("model")


def measure_module(module: torch.nn.Module, *, input_shape: Sequence[int], config: BackendConfig,
                   repeats: int | None = None, warmup: int | None = None, workdir: str | Path | None = None,
                   settings: SteadySettings | None = None) -> dict[str, Any]:
    """Measures one whole module end to end with a backend and the steady estimator.

    Works for every backend (ONNX backends export the module first; ``remote`` pushes it to the
    device with the config's templates).

    Args:
        module: The model.
        input_shape: N, C, H, W of its input.
        config: The backend settings (a table's ``BackendConfig.from_header``).
        repeats: Timed runs in all, split into rounds (``SteadySettings.from_counts``); None with
            ``warmup`` None: the estimator's defaults.
        warmup: Untimed runs first.
        workdir: Folder for the exported file (a temporary one inside it).
        settings: The estimator settings; override ``repeats``/``warmup``.

    Returns:
        The latency-table entry statistics over all timed runs (``median_ms``, ``mean_ms``,
        ``std_ms``, ``p10_ms``, ``p90_ms``, ``count``) plus ``steady_ms`` (report this one as the
        measured latency), ``spread_pct``, ``estimator``, ``rounds``, ``runs_per_round``,
        ``attempts`` and ``unstable``.
    """
    steady = steady_settings(repeats, warmup, settings)
    backend = make_backend(config)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        runner = backend.prepare(module, input_shape, workdir=Path(tmp), name="model")
        try:
            return time_runner(backend, runner, settings=steady)
        finally:
            runner.close()


def measure_onnx_file(path: str | Path, *, input_shape: Sequence[int], config: BackendConfig,
                      repeats: int | None = None, warmup: int | None = None,
                      settings: SteadySettings | None = None) -> dict[str, Any]:
    """Measures an existing ONNX file with an ONNX-running backend (``ort-cpu``, ``remote``).

    Used to time exported (and quantized) models with a latency table's own settings; counts and
    estimator as ``measure_module``.

    Raises:
        InputError: for a missing file, or a backend that cannot run ONNX files (``torch-cpu``, ``cuda``).

    Returns:
        The entry statistics and steady figure, as ``measure_module``.
    """
    steady = steady_settings(repeats, warmup, settings)
    p = Path(path)
    backend = make_backend(config)
    if not backend.runs_onnx:
        backend.prepare_onnx(p, input_shape, name=p.stem)  # raises InputError naming the backend
    if not p.is_file():
        raise InputError(f"ONNX file {p} does not exist.")
    runner = backend.prepare_onnx(p, input_shape, name=p.stem)
    try:
        return time_runner(backend, runner, settings=steady)
    finally:
        runner.close()
