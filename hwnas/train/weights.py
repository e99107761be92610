"""Loading weights into a built architecture, naming the first tensor that does not fit.

``hwnas train`` writes checkpoints ``{"format": "hwnas.train_checkpoint/1", "arch": ..., "model":
state_dict, ...}``; a plain ``state_dict`` (name → tensor) is accepted too.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from hwnas.errors import InputError
from hwnas.safeio import short
from hwnas.train.checkpoint import load_checkpoint


def state_dict_of(obj: Any, *, source: str) -> dict[str, torch.Tensor]:
    """The model ``state_dict`` inside a loaded checkpoint (``obj["model"]``) or ``obj`` itself.

    Raises:
        InputError: when ``obj`` is neither a hwnas checkpoint nor a name → tensor mapping.
    """
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise InputError(f"{source} holds neither a hwnas checkpoint nor a state_dict (name → tensor).")
    return dict(obj)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def check_fit(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Raises ``InputError`` naming the first tensor of ``model`` (in module order) that ``state``
    lacks or holds with another shape, else the first tensor ``state`` has in excess."""
    expected = model.state_dict()
    for name, t in expected.items():
        if name not in state:
            raise InputError(f"{source} does not fit the architecture: tensor {name} {_shape(t)} is missing.")
        if tuple(state[name].shape) != tuple(t.shape):
            raise InputError(f"{source} does not fit the architecture: tensor {name} has shape "
                             f"{_shape(state[name])} in the file but {_shape(t)} in the architecture.")
    for name in state:
        if name not in expected:
            raise InputError(f"{source} does not fit the architecture: it has an extra tensor {name} "
                             f"{_shape(state[name])}.")


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copies ``state`` into ``model`` after ``check_fit`` (so a mismatch is named, not a traceback)."""
    check_fit(model, state, source=source)
    model.load_state_dict(state, strict=True)


def check_same_arch(trained: Mapping[str, Any], arch: Mapping[str, Any], *, source: str) -> None:
    """Refuses weights trained for another architecture of the same shapes (e.g. other activations).

    The resolution may differ (the weights of a fully convolutional network run at any size).

    Raises:
        InputError: naming the first differing field or decision.
    """
    for field in ("space", "width_mult", "num_classes"):
        if trained.get(field) != arch.get(field):
            raise InputError(f"{source} was trained for {field} {short(trained.get(field))}, "
                             f"but the architecture has {short(arch.get(field))}.")
    theirs, ours = trained.get("choices", {}), arch.get("choices", {})
    for name, value in ours.items():
        if theirs.get(name) != value:
            raise InputError(f"{source} was trained with choices.{name} = {short(theirs.get(name))}, "
                             f"but the architecture has {short(value)}.")


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, dict[str, Any]]:
    """Reads a weights file.

    Returns:
        (state_dict, the architecture it was trained for or None, the checkpoint's other fields
        (``preprocessing``, ``accuracy``, ...) or an empty dict for a plain state_dict).
    """
    source = f"--weights file {path}"
    obj = load_checkpoint(path, what="--weights file")
    state = state_dict_of(obj, source=source)
    extra: dict[str, Any] = {}
    trained_arch = None
    if isinstance(obj, Mapping) and "model" in obj:
        extra = {k: v for k, v in obj.items() if k not in ("model", "optimizer", "rng")}
        trained_arch = obj.get("arch") if isinstance(obj.get("arch"), Mapping) else None
    return state, trained_arch, extra
