"""Stage 2, profiling: takes a space's blocks (or whole models) and a backend (ort-cpu, torch-cpu,
cuda, remote); gives per-block latency tables (``profile_table``) and end-to-end timings
(``measure_module``, ``measure_onnx_file``, ``measure_archs``), all with one steady-latency
estimator (``SteadySettings``, ``measure_side_by_side``: interleaved short rounds, a low quantile of
round medians, its spread).
"""

from hwnas.profile.backend import BackendConfig
from hwnas.profile.measure import make_backend, measure_module, measure_onnx_file
from hwnas.profile.onnx_io import OPSET, export_onnx, ort_session
from hwnas.profile.profiler import ProfileSettings, profile_table
from hwnas.profile.steady import ESTIMATOR, SideBySide, SteadyLatency, SteadySettings, measure_side_by_side
from hwnas.profile.whole_model import (MeasurementStore, check_measurable, default_repeats, measure_archs,
                                       measure_archs_side_by_side, table_measure, whole_model_settings)

__all__ = [
    "BackendConfig",
    "ESTIMATOR",
    "MeasurementStore",
    "OPSET",
    "ProfileSettings",
    "SideBySide",
    "SteadyLatency",
    "SteadySettings",
    "check_measurable",
    "default_repeats",
    "export_onnx",
    "make_backend",
    "measure_archs",
    "measure_archs_side_by_side",
    "measure_module",
    "measure_side_by_side",
    "measure_onnx_file",
    "ort_session",
    "profile_table",
    "table_measure",
    "whole_model_settings",
]
