"""Export building blocks: ONNX with hwnas metadata, ORT-format conversion, the all-or-nothing
output folder. ``hwnas.export.pipeline.export_model`` puts them together (``hwnas export``).

Metadata (``metadata_props`` of every exported file, keys prefixed ``hwnas.``): ``version`` and
``space`` as plain strings; ``arch``, ``input_shape``, ``dynamic_batch``, ``normalization``
(``hwnas.train.retrain.preprocessing_record`` or null), ``output`` and, for int8 files,
``quantization`` as JSON text. ``read_metadata`` decodes them from ``.onnx`` and ``.ort`` files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from hwnas import __version__
from hwnas.errors import InputError
from hwnas.jsonio import atomic_write_bytes
from hwnas.profile import OPSET, export_onnx, ort_session
from hwnas.space import SearchSpace, build_model

#: Prefix of the keys hwnas writes into an ONNX model's ``metadata_props``.
META_PREFIX = "hwnas."
#: Metadata values stored as plain strings; every other value is JSON text.
_PLAIN_META = ("version", "space")


# ---- metadata ------------------------------------------------------------------------------

def model_metadata(*, arch: dict[str, Any], input_shape: list[Any], dynamic_batch: bool,
                   normalization: dict[str, Any] | None, quantization: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata an exported model carries (keys without the ``hwnas.`` prefix).

    Args:
        arch: The validated architecture.
        input_shape: N, C, H, W of the input, N being ``"N"`` for a dynamic batch.
        dynamic_batch: Whether the batch dimension is symbolic.
        normalization: ``hwnas.train.retrain.preprocessing_record`` (None when unknown).
        quantization: How an int8 file was made (None for fp32).
    """
    meta: dict[str, Any] = {"version": __version__, "space": arch["space"], "arch": arch,
                            "input_shape": list(input_shape), "dynamic_batch": dynamic_batch,
                            "normalization": normalization, "output": "logits"}
    if quantization:
        meta["quantization"] = quantization
    return meta


def write_metadata(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Stores ``meta`` in the ONNX file's ``metadata_props`` (replacing earlier hwnas keys)."""
    import onnx

    model = onnx.load(str(path))
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for k, v in keep:
        model.metadata_props.add(key=k, value=v)
    for k, v in meta.items():
        model.metadata_props.add(key=META_PREFIX + k, value=v if k in _PLAIN_META else json.dumps(v))
    atomic_write_bytes(path, model.SerializeToString())


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The hwnas metadata of an ``.onnx`` or ``.ort`` model (read through ONNX Runtime), decoded."""
    raw = ort_session(path, optimize=False).get_modelmeta().custom_metadata_map
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(META_PREFIX):
            k = key[len(META_PREFIX):]
            out[k] = value if k in _PLAIN_META else json.loads(value)
    return out


# ---- output folder -------------------------------------------------------------------------

def check_target(out: Path, *, force: bool) -> None:
    """Refuses a target that is a file or cannot be written, or a non-empty folder without ``force``."""
    from hwnas.safeio import check_output_dir

    check_output_dir(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InputError(f"--out {out} exists and is not empty; pass --force to replace it.")


def staging_folder(out: Path) -> Path:
    """A new hidden folder next to ``out`` (same file system, so it can be renamed into place).

    Raises:
        InputError: when the parent folder cannot be created or written.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise InputError(f"--out {out} cannot be written ({exc.strerror or exc}).") from None


def move_into_place(staging: Path, out: Path) -> None:
    """Renames the finished ``staging`` folder to ``out``, replacing an existing ``out``.

    Temporary files are created private (0700/0600); the published folder gets the usual
    permissions of new files (umask applied).
    """
    umask = os.umask(0)
    os.umask(umask)
    for f in staging.rglob("*"):
        os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~umask)
    os.chmod(staging, 0o777 & ~umask)
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "x")
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---- steps ---------------------------------------------------------------------------------

#: ``--ort-platform`` choices: ``portable`` runs anywhere (no x86-only NCHWc layout, so slower on x86
#: than the ``.onnx``, which ONNX Runtime optimizes for the CPU at load time); ``arm`` adds ARM-only
#: int8 choices; ``amd64`` bakes in the x86 NCHWc layout (fast here, x86 only).
ORT_PLATFORMS = ("portable", "arm", "amd64")


def convert_to_ort(onnx_path: Path, folder: Path, *, platform: str = "portable") -> tuple[Path, Path | None]:
    """Converts an ONNX file to the ORT format with ``onnxruntime.tools.convert_onnx_models_to_ort``
    (``Fixed`` optimization style, all graph optimizations), run as a subprocess.

    Args:
        onnx_path: The verified fp32 ONNX file.
        folder: Where the ``.ort`` file goes.
        platform: One of ``ORT_PLATFORMS``.

    Returns:
        The ``.ort`` file and its ``.required_operators.config`` (for a minimal ORT build), in ``folder``.
    """
    scratch = Path(tempfile.mkdtemp(prefix=".ort-", dir=folder))
    try:
        cmd = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", "--optimization_style", "Fixed",
               "--output_dir", str(scratch), str(onnx_path)]
        if platform != "portable":
            cmd[-1:-1] = ["--target_platform", platform]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        produced = scratch / f"{onnx_path.stem}.ort"
        if r.returncode != 0 or not produced.is_file():
            tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
            raise RuntimeError(f"ORT format conversion of {onnx_path.name} failed: {' | '.join(tail)}")
        ort_path = folder / produced.name
        os.replace(produced, ort_path)
        config = scratch / f"{onnx_path.stem}.required_operators.config"
        config_path = None
        if config.is_file():
            config_path = folder / config.name
            os.replace(config, config_path)
        return ort_path, config_path
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_onnx(path: Path) -> None:
    """``onnx.checker`` with full shape inference; raises on an invalid model."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def export_verified(model: torch.nn.Module, path: Path, *, input_shape: list[int], dynamic_batch: bool,
                    meta: dict[str, Any], atol: float, seed: int):
    """Exports ``model`` to ``path`` with metadata, checks it with ``onnx.checker`` and verifies parity.

    Returns:
        The ``hwnas.export.verify.Parity`` of the file.

    Raises:
        hwnas.export.verify.VerificationError: when ONNX Runtime misses the tolerance.
    """
    from hwnas.export.verify import check_parity, require_parity

    export_onnx(model, input_shape, path, opset=OPSET, dynamic_batch=dynamic_batch)
    write_metadata(path, meta)
    check_onnx(path)
    parity = check_parity(model, path, input_shape=input_shape[1:], dynamic_batch=dynamic_batch, atol=atol, seed=seed)
    require_parity(parity, path=path)
    return parity


def build_for_export(space: SearchSpace, arch: dict[str, Any], *, state: dict[str, torch.Tensor] | None,
                     source: str, seed: int) -> torch.nn.Module:
    """The network in eval mode: trained weights loaded (mismatch named), or freshly initialized
    with randomized batch norms (``hwnas.export.verify.randomize_batchnorm``) when there are none."""
    from hwnas.export.verify import randomize_batchnorm
    from hwnas.train import load_weights

    torch.manual_seed(seed)
    model = build_model(space.resolve(arch))
    if state is not None:
        load_weights(model, state, source=source)
    else:
        randomize_batchnorm(model, seed=seed)
    return model.eval()
