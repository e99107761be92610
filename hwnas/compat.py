"""Compatibility shims for this platform's torch stack, applied before third-party imports.

torchvision: the wheel available here is a CUDA build whose C extension (``torchvision/_C.so``)
cannot load on a CPU-only torch. ``import torchvision`` then fails with
``operator torchvision::nms does not exist`` because its Python-side fake registrations expect
the extension's operator schemas. ``import_torchvision`` first tries to load the extension; only
where that fails does it define the two missing schemas (``torchvision::nms``, ``torchvision::qnms``)
with ``torch.library`` so models, transforms and datasets import. The C ops themselves stay
unusable, and hwnas never calls them. Where the extension loads, nothing is defined.

fvcore: its import warns about ``torch.jit.script``; ``import_fvcore_flops`` filters that warning.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import ModuleType

import torch

# Holds the schema definitions alive for the process lifetime (torch.library requires it).
_LIBRARY_HOLDER: list[torch.library.Library] = []


def _has_schema(name: str) -> bool:
    try:
        torch._C._get_schema(name, "")
    except RuntimeError:
        return False
    return True


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    for lib in sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(lib))
        except (OSError, RuntimeError):
            return False
        return True
    return False


def _ensure_torchvision_schemas() -> None:
    if _has_schema("torchvision::nms") or _LIBRARY_HOLDER:
        return
    if _extension_loads() and _has_schema("torchvision::nms"):
        return
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY_HOLDER.append(lib)


def import_torchvision() -> ModuleType:
    """Imports torchvision, registering the missing C-op schemas first where its extension cannot load.

    Returns:
        The ``torchvision`` module.
    """
    _ensure_torchvision_schemas()
    import torchvision

    return torchvision


def import_fvcore_flops():
    """Returns fvcore's ``FlopCountAnalysis`` with its ``torch.jit.script`` import warning filtered."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis
    return FlopCountAnalysis
