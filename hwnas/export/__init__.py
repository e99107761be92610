"""Stage 6, export: takes an architecture (and weights); gives a verified ONNX model (parity against
PyTorch), optionally ``.ort`` and int8, its measured and predicted latency and a model card.
"""

from hwnas.export.artifacts import ORT_PLATFORMS
from hwnas.export.pipeline import ExportOptions, export_model
from hwnas.export.verify import ATOL

__all__ = [
    "ATOL",
    "ExportOptions",
    "ORT_PLATFORMS",
    "export_model",
]
