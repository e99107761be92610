"""``torch-cpu`` backend: blocks timed in PyTorch eager mode on the CPU.

``torch.inference_mode``, a fixed intra-op thread count (``torch.set_num_threads``, held only
while timing and restored afterwards) and optionally the ``channels_last`` (NHWC) memory format.
"""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from hwnas.profile.backend import Backend, Runner, random_input, register_backend


class _TorchRunner(Runner):
    """A module in eval mode with a fixed input on a device; ``sync`` waits for queued work."""

    def __init__(self, module: torch.nn.Module, input_shape: Sequence[int], *, device: str,
                 dtype: torch.dtype, channels_last: bool) -> None:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        # a copy: the caller's module keeps its device, dtype, layout and mode
        self.module = copy.deepcopy(module).eval().to(device=device, dtype=dtype, memory_format=fmt)
        x = torch.from_numpy(random_input(input_shape))  # N, C, H, W
        self.x = x.to(device=device, dtype=dtype).contiguous(memory_format=fmt)

    def run_once(self) -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            self.module(self.x)
            return (time.perf_counter() - t0) * 1e3  # ms

    def close(self) -> None:
        self.module = None
        self.x = None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Holds ``torch.set_num_threads(n)`` and restores the previous count on exit."""
    prev = torch.get_num_threads()
    if prev != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)


@register_backend("torch-cpu")
class TorchCpuBackend(Backend):
    """PyTorch eager on the CPU (``torch.inference_mode``, ``threads`` intra-op threads)."""

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__, "mkldnn": str(torch.backends.mkldnn.is_available())}

    def timing_context(self):
        return torch_threads(self.config.threads)

    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        return _TorchRunner(module, input_shape, device="cpu", dtype=torch.float32,
                            channels_last=self.config.channels_last)
