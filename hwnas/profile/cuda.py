"""``cuda`` backend: PyTorch on a CUDA GPU, timed with CUDA events.

Each sample: ``torch.cuda.synchronize()`` (nothing else queued), record a start event, run the
module, record an end event, wait for it, and read ``start.elapsed_time(end)`` (ms, GPU clock).
This times the GPU work plus the launch overhead between the events, not host-side Python before
them. ``float32`` or ``float16`` (``--dtype``), optional ``channels_last``; cuDNN autotuning
(``torch.backends.cudnn.benchmark``) is on while timing, so warm-up runs pick the kernels.
On a machine without a usable GPU the backend refuses with ``InputError`` (CLI exit 2).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import torch

from hwnas.errors import InputError
from hwnas.profile.backend import Backend, Runner, register_backend
from hwnas.profile.torch_cpu import _TorchRunner

_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class _CudaRunner(_TorchRunner):
    def __init__(self, module: torch.nn.Module, input_shape: Sequence[int], *, dtype: torch.dtype,
                 channels_last: bool) -> None:
        super().__init__(module, input_shape, device="cuda", dtype=dtype, channels_last=channels_last)
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def run_once(self) -> float:
        with torch.inference_mode():
            torch.cuda.synchronize()
            self.start.record()
            self.module(self.x)
            self.end.record()
            self.end.synchronize()
        return float(self.start.elapsed_time(self.end))  # ms


@contextlib.contextmanager
def _cudnn_benchmark() -> Iterator[None]:
    prev = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = prev


@register_backend("cuda")
class CudaBackend(Backend):
    """PyTorch eager on the first CUDA GPU, fp32 or fp16, timed with CUDA events."""

    dtypes = tuple(_DTYPES)

    def check_available(self) -> None:
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA device is visible")
            raise InputError(f"--backend cuda needs a CUDA GPU, but {why} (torch {torch.__version__}); "
                             "use ort-cpu or torch-cpu on this machine.")

    def versions(self) -> dict[str, str]:
        v = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
        if torch.backends.cudnn.is_available():
            v["cudnn"] = str(torch.backends.cudnn.version())
        return v

    def processor(self) -> str:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"

    def timing_context(self):
        return _cudnn_benchmark()

    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        return _CudaRunner(module, input_shape, dtype=_DTYPES[self.config.dtype],
                           channels_last=self.config.channels_last)
