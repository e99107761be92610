"""Int8 quantization of exported models with ONNX Runtime's tools (``onnxruntime.quantization``).

Affine quantization ``real = scale * (q - zero_point)`` (Jacob et al., CVPR 2018, Sec. 2.1, Eq. 1),
per output channel for weights.

* ``dynamic``: weights int8 ahead of time, activations quantized at run time per tensor
  (convolutions become ``ConvInteger``, matrix products ``MatMulInteger``). No calibration data.
  On x86 CPUs ONNX Runtime's ``ConvInteger`` kernel is often *slower* than fp32 convolution; the
  export reports what it measures.
* ``static``: QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into
  ``QLinearConv`` etc.), uint8 activations and int8 per-channel weights (the U8S8 combination ONNX
  Runtime recommends for x86), activation ranges calibrated (MinMax) on batches of the training
  split, preprocessed exactly as in training.

Both first run ONNX Runtime's quantization pre-processing (shape inference and graph
optimization, ``quant_pre_process``), as its documentation recommends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from hwnas.train import Dataset, Split, batches

MODES = ("dynamic", "static")


class SplitCalibrationReader(CalibrationDataReader):
    """Feeds ``count`` preprocessed images of a split to ``quantize_static`` (a
    ``CalibrationDataReader``), ``batch`` at a time (the model's fixed batch size).

    Args:
        split: Usually the training split (never the held-out one).
        ds: Its dataset (normalization).
        resolution: Network input side, pixels.
        count: Number of images used for calibration.
        batch: Images per model run (1 for a fixed-batch-1 export).
        input_name: The model's input name.
    """

    def __init__(self, split: Split, ds: Dataset, *, resolution: int, count: int, batch: int = 1,
                 input_name: str = "input") -> None:
        self.split, self.ds, self.resolution = split, ds, resolution
        self.batch, self.input_name = batch, input_name
        self.count = min(count, len(split)) // batch * batch  # images actually fed
        self._it: Iterator[np.ndarray] | None = None

    def _chunks(self) -> Iterator[np.ndarray]:
        left = self.count
        for x, _ in batches(self.split, self.ds, batch_size=max(self.batch, 64), resolution=self.resolution,
                            shuffle=False):
            xn = x.contiguous().numpy()  # N, 3, R, R
            for i in range(0, xn.shape[0] - self.batch + 1, self.batch):
                if left < self.batch:
                    return
                left -= self.batch
                yield xn[i:i + self.batch]

    def __len__(self) -> int:
        return self.count // self.batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._chunks()
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._it = None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantization tools print and log progress: keep stdout clean for ``--json``."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def quantize(src: str | os.PathLike, dst: str | os.PathLike, *, mode: str,
             calibration: SplitCalibrationReader | None = None, per_channel: bool = True) -> Path:
    """Writes an int8 version of the fp32 ONNX model ``src`` to ``dst``.

    Args:
        src: fp32 ONNX file.
        dst: Destination ONNX file.
        mode: ``dynamic`` or ``static``.
        calibration: Calibration batches (required for ``static``).
        per_channel: Per-output-channel weight scales (recommended for depthwise convolutions).

    Returns:
        ``dst``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}")
    if mode == "static" and calibration is None:
        raise ValueError("static quantization needs calibration data")
    dst = Path(dst)
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=dst.parent) as tmp, _quiet():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(dst), per_channel=per_channel, weight_type=QuantType.QInt8)
        else:
            calibration.rewind()
            quantize_static(str(pre), str(dst), calibration, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dst
