"""Stage 2, profiling: takes a space's blocks (or whole models) and a backend (ort-cpu, torch-cpu,
cuda, remote); gives per-block latency tables (``profile_table``) and end-to-end timings
(``measure_module``, ``measure_onnx_file``, ``measure_archs``).
"""

from hwnas.profile.backend import BackendConfig
from hwnas.profile.measure import make_backend, measure_module, measure_onnx_file
from hwnas.profile.onnx_io import OPSET, export_onnx, ort_session
from hwnas.profile.profiler import ProfileSettings, profile_table
from hwnas.profile.whole_model import (MeasurementStore, check_measurable, default_repeats, measure_archs,
                                       table_measure)

__all__ = [
    "BackendConfig",
    "MeasurementStore",
    "OPSET",
    "ProfileSettings",
    "check_measurable",
    "default_repeats",
    "export_onnx",
    "make_backend",
    "measure_archs",
    "measure_module",
    "measure_onnx_file",
    "ort_session",
    "profile_table",
    "table_measure",
]
