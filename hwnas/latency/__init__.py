"""Stage 3, latency: takes latency tables (profiled or imported) and calibrations; gives
``LatencyModel`` (one architecture's latency) and ``BatchPredictor`` (many, vectorized, and the
differentiable expected latency).
"""

from hwnas.latency.batch import BatchPredictor
from hwnas.latency.calibration import calibration_path
from hwnas.latency.importers import IMPORTERS, import_table
from hwnas.latency.model import LatencyModel
from hwnas.latency.table import (COMMAND_FIELDS, ENTRY_FIELDS, LatencyTable, entry_cv, entry_from_samples,
                                 entry_ms, utc_now)
from hwnas.latency.validate import calibrate, plot_scatter, validate

__all__ = [
    "BatchPredictor",
    "COMMAND_FIELDS",
    "ENTRY_FIELDS",
    "IMPORTERS",
    "LatencyModel",
    "LatencyTable",
    "calibrate",
    "calibration_path",
    "entry_cv",
    "entry_from_samples",
    "entry_ms",
    "import_table",
    "plot_scatter",
    "utc_now",
    "validate",
]
