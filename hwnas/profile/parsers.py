"""Parsers of on-device benchmark tools' output (the ``remote`` backend's ``--parser``).

A parser turns the complete text a ``--run-cmd`` printed (stdout and stderr) into one latency, the
tool's average time per inference in milliseconds. Parsers are registered by name:

* ``ort-perf-test``: ONNX Runtime's ``onnxruntime_perf_test``, the line
  ``Average inference time cost: 12.3 ms`` (newer releases print ``... cost total: 12.3 ms``).
* ``tflite-benchmark``: TensorFlow Lite's ``benchmark_model``, the summary line
  ``Inference timings in us: Init: ..., Inference (avg): 14575.2`` (microseconds; falls back to the
  last ``count=N ... avg=X`` line of older builds).
* ``ms``: a custom script that prints the latency in ms as the last number of its output.
"""

from __future__ import annotations

import re
from typing import Callable

from hwnas.errors import InputError

#: name → function(output text) → ms (raises ``ValueError`` when the output has no timing).
PARSERS: dict[str, Callable[[str], float]] = {}

_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)"


def register_parser(name: str) -> Callable[[Callable[[str], float]], Callable[[str], float]]:
    """Registers an output parser under ``name`` (a ``--parser`` value)."""

    def deco(fn: Callable[[str], float]) -> Callable[[str], float]:
        PARSERS[name] = fn
        return fn

    return deco


def get_parser(name: str) -> Callable[[str], float]:
    """The parser called ``name``; unknown names raise ``InputError`` listing the known ones."""
    if name not in PARSERS:
        raise InputError(f"--parser {name!r} is unknown (parsers: {', '.join(sorted(PARSERS))}).")
    return PARSERS[name]


def _last(pattern: str, text: str) -> str | None:
    found = re.findall(pattern, text)
    return found[-1] if found else None


@register_parser("ort-perf-test")
def parse_ort_perf_test(text: str) -> float:
    """``onnxruntime_perf_test``: ``Average inference time cost[ total]: X ms`` → X (ms)."""
    v = _last(r"Average inference time cost(?: total)?:\s*" + _NUM + r"\s*ms", text)
    if v is None:
        raise ValueError("no 'Average inference time cost: X ms' line")
    return float(v)


@register_parser("tflite-benchmark")
def parse_tflite_benchmark(text: str) -> float:
    """TFLite ``benchmark_model``: ``Inference (avg): X`` in µs (or the last ``count=.. avg=X``) → ms."""
    v = _last(r"Inference \(avg\):\s*" + _NUM, text)
    if v is None:
        v = _last(r"count=\d+\s+first=\S+\s+curr=\S+\s+min=\S+\s+max=\S+\s+avg=" + _NUM, text)
    if v is None:
        raise ValueError("no 'Inference (avg): X' or 'count=N ... avg=X' line")
    return float(v) / 1e3  # us → ms


@register_parser("ms")
def parse_plain_ms(text: str) -> float:
    """A custom script's output whose last number is the latency in ms."""
    v = _last(_NUM, text)
    if v is None:
        raise ValueError("no number in the output")
    return float(v)
