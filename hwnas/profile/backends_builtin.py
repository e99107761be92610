"""Built-in backends. ``ort-cpu``: ONNX Runtime CPU provider, graph optimizations on."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from hwnas.onnx_io import export_onnx, ort_session
from hwnas.profile.backend import Backend, Runner, random_input, register_backend, timed


class _OrtRunner(Runner):
    def __init__(self, path: Path, input_shape: Sequence[int], threads: int) -> None:
        self.session = ort_session(path, threads=threads)
        self.feed = {self.session.get_inputs()[0].name: random_input(input_shape)}

    def run_once(self) -> float:
        return timed(lambda: self.session.run(None, self.feed))


@register_backend("ort-cpu")
class OrtCpuBackend(Backend):
    """Each model exported alone to ONNX and timed in an ONNX Runtime ``InferenceSession`` (CPU)."""

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {**super().versions(), "onnxruntime": onnxruntime.__version__}

    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        path = export_onnx(module, input_shape, workdir / f"{name}.onnx")
        return _OrtRunner(path, input_shape, self.config.threads)
