"""``ort-cpu`` backend: ONNX Runtime CPU provider, graph optimizations on."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hwnas.profile.backend import Backend, Runner, onnx_versions, random_input, register_backend, timed
from hwnas.profile.onnx_io import export_onnx, ort_session


class _OrtRunner(Runner):
    def __init__(self, path: Path, input_shape: Sequence[int], threads: int) -> None:
        self.session = ort_session(path, threads=threads)
        inp = self.session.get_inputs()[0]
        x = random_input(input_shape)  # N, C, H, W float32
        if inp.type == "tensor(float16)":
            x = x.astype(np.float16)
        self.feed = {inp.name: x}

    def run_once(self) -> float:
        return timed(lambda: self.session.run(None, self.feed))

    def close(self) -> None:
        self.session = None


@register_backend("ort-cpu")
class OrtCpuBackend(Backend):
    """Each model exported alone to ONNX and timed in an ONNX Runtime ``InferenceSession`` (CPU
    provider, ``intra_op_num_threads = threads``, sequential execution, ``ORT_ENABLE_ALL``)."""

    runs_onnx = True

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {**onnx_versions(), "onnxruntime": onnxruntime.__version__}

    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        path = export_onnx(module, input_shape, workdir / f"{name}.onnx")
        return self.prepare_onnx(path, input_shape, name=name)

    def prepare_onnx(self, path: Path, input_shape: Sequence[int], *, name: str) -> Runner:
        return _OrtRunner(Path(path), input_shape, self.config.threads)
