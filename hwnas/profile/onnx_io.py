"""ONNX export (single file, fixed or dynamic batch) and ONNX Runtime sessions, shared by the
profilers, latency validation and model export.

``torch.onnx.export`` in torch 2.13 uses the dynamo exporter (needs onnxscript) and writes weights
to a side file unless ``external_data=False``; it also prints progress on stdout, which is moved to
stderr here so ``--json`` output stays one object. Opset 18 is the lowest the dynamo exporter
implements natively (17 round-trips through a version converter that fails on some graphs).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Sequence

import torch

OPSET = 18


def export_onnx(module: torch.nn.Module, input_shape: Sequence[int], path: str | Path, *,
                opset: int = OPSET, dynamic_batch: bool = False, input_name: str = "input",
                output_name: str = "output") -> Path:
    """Exports ``module`` (in eval mode) to one self-contained ONNX file.

    Args:
        module: The network or block.
        input_shape: N, C, H, W of the example input.
        path: Destination ``.onnx`` file (parent folders are created).
        opset: ONNX opset (>= 18).
        dynamic_batch: Make the batch dimension symbolic.
        input_name: Graph input name.
        output_name: Graph output name.

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    x = torch.zeros(*input_shape)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            torch.onnx.export(
                module, (x,), str(path), dynamo=True, opset_version=opset, external_data=False,
                input_names=[input_name], output_names=[output_name], dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
    finally:
        module.train(was_training)
    return path


def ort_session(path: str | Path, *, threads: int = 1, optimize: bool = True):
    """An ONNX Runtime CPU ``InferenceSession`` with ``threads`` intra-op threads.

    Graph optimizations are on (``ORT_ENABLE_ALL``) as deployment would run the model; inter-op
    parallelism is off (sequential execution).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
