"""Checkpoints: atomic ``torch.save`` and safe ``torch.load`` with clear errors.

Generic on purpose (training runs, search run directories, exported weights): a checkpoint is any
object ``torch.load(..., weights_only=True)`` accepts: nested dicts, lists and tuples of tensors,
numbers, strings, booleans and ``None``. Writes go to a temporary file in the same folder that is
renamed into place, so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from hwnas.errors import InputError
from hwnas.jsonio import atomic_write_bytes


def save_checkpoint(path: str | os.PathLike, obj: Any) -> Path:
    """Serializes ``obj`` with ``torch.save`` and writes it atomically (temp file + rename).

    Args:
        path: Destination file (parent folders are created).
        obj: Anything ``torch.load(..., weights_only=True)`` can read back.

    Returns:
        The written path.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint") -> Any:
    """Loads a checkpoint on the CPU with ``torch.load(..., weights_only=True)`` (no arbitrary pickles).

    Args:
        path: The file.
        what: What the file is, for the message (e.g. "--weights file").

    Raises:
        InputError: naming the file when it is missing, truncated, not a PyTorch file, or holds
            objects a weights-only load refuses.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p} does not exist.")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types (KeyError, EOFError, RuntimeError, ...)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if len(reason) > 120:
            reason = reason[:117] + "..."
        raise InputError(f"{what} {p} is not a readable PyTorch checkpoint ({type(exc).__name__}: {reason}).") from None
