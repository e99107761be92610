"""``hwnas export``: an architecture (and optional weights) → a verified, deployable model folder.

::

    export/NAME/NAME.onnx                      fp32, opset 18, one file, hwnas metadata
    export/NAME/NAME.ort                       (--ort) ONNX Runtime mobile format, same metadata
    export/NAME/NAME.required_operators.config (--ort) operators for a minimal ORT build
    export/NAME/NAME.int8.onnx                 (--int8) quantized with onnxruntime.quantization
    export/NAME/arch.json                      the architecture
    export/NAME/card.json, card.md             model card (accuracy, latency, files with sha256)

Everything that can be refused is checked first (``_prepare``). The folder is then assembled in
a hidden staging folder next to the target and renamed into place at the end, so a failure (bad
input, failed verification, interruption) leaves no partial output. Every fp32 file is verified
against PyTorch (``hwnas.export.verify``) before anything is kept.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hwnas import __version__
from hwnas.errors import InputError
from hwnas.export.artifacts import (ORT_PLATFORMS, build_for_export, check_onnx, check_target, convert_to_ort,
                                    export_verified, model_metadata, move_into_place, staging_folder,
                                    write_metadata)
from hwnas.jsonio import write_json_atomic
from hwnas.profile import OPSET
from hwnas.space import SearchSpace


@dataclass(frozen=True)
class ExportOptions:
    """Settings of one export.

    Attributes:
        name: File stem of the exported files (the CLI defaults it to the output folder's name).
        dynamic_batch: Symbolic batch dimension instead of a fixed batch of 1.
        ort: Also write the ONNX Runtime mobile format (``.ort``).
        ort_platform: Target of the ``.ort`` optimizations (``hwnas.export.artifacts.ORT_PLATFORMS``).
        int8: ``dynamic`` or ``static`` int8 quantization, or None.
        atol: Tolerance of the fp32 parity check (max abs diff of logits).
        force: Replace an existing non-empty output folder.
        calibration_size: Images of the training split used to calibrate static int8.
        data_limit: Keep at most this many examples per split of ``--data``.
        repeats: Timed runs of each latency measurement in all (after ``warmup`` untimed ones), split
            into rounds of the steady estimator; None: ``rounds`` x ``runs_per_round``.
        warmup: Untimed runs before measuring.
        seed: Seed of the model initialization, BN randomization and random verification inputs.
        rounds: Rounds of the steady estimator (``hwnas.profile.steady``; None: from ``repeats``, else 30).
        runs_per_round: Back-to-back timed runs per round (None: from ``repeats``, else 5).
    """

    name: str
    dynamic_batch: bool = False
    ort: bool = False
    ort_platform: str = "portable"
    int8: str | None = None
    atol: float = 1e-4
    force: bool = False
    calibration_size: int = 200
    data_limit: int | None = None
    repeats: int | None = None
    warmup: int = 5
    seed: int = 0
    rounds: int | None = None
    runs_per_round: int | None = None

    def steady(self):
        """The steady estimator's settings of every latency measurement (``SteadySettings``)."""
        from hwnas.profile import SteadySettings

        s = SteadySettings.from_counts(repeats=self.repeats, warmup=self.warmup, rounds=self.rounds,
                                       runs_per_round=self.runs_per_round)
        s.validate()
        return s

    def validate(self) -> None:
        """Raises ``InputError`` naming the first bad option."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name or ""):
            raise InputError(f"--name {self.name!r} must start with a letter or digit and use only letters, "
                             f"digits, '.', '_' and '-'.")
        if self.ort_platform not in ORT_PLATFORMS:
            raise InputError(f"--ort-platform must be one of {', '.join(ORT_PLATFORMS)}, got {self.ort_platform!r}.")
        if self.int8 not in (None, "dynamic", "static"):
            raise InputError(f"--int8 must be 'dynamic' or 'static', got {self.int8!r}.")
        if not self.atol > 0:
            raise InputError(f"--atol must be a positive number, got {self.atol!r}.")
        for flag, v, low in (("--calibration-size", self.calibration_size, 1), ("--warmup", self.warmup, 0)):
            if v < low:
                raise InputError(f"{flag} must be an integer >= {low}, got {v!r}.")
        self.steady()  # --repeats, --rounds, --runs-per-round
        if self.data_limit is not None and self.data_limit < 1:
            raise InputError(f"--data-limit must be a positive integer, got {self.data_limit!r}.")


@dataclass(frozen=True)
class _Prepared:
    """Everything validated before the first file is written."""

    model: torch.nn.Module  # eval mode, trained or randomized weights
    trained: bool  # weights were given
    extra: dict[str, Any]  # the checkpoint's other fields (accuracy, config, preprocessing)
    ds: Any  # hwnas.train.data.Dataset | None, normalized as in training
    preprocessing: dict[str, Any] | None
    config: Any  # hwnas.profile.backend.BackendConfig of the measurement; None: predicted only
    processor: str
    predicted_ms: float | None
    prediction: dict[str, Any] | None


def _latency_settings(space: SearchSpace, arch: dict[str, Any], *, table: str | None, dynamic_batch: bool,
                      commands: Any):
    """Backend config (None: predicted only), processor name, predicted latency (ms) and prediction details.

    A table measured on a ``remote`` device is measured on again only with the user's ``commands``
    (``hwnas.profile.device_config.RemoteCommands``); without them the latency is predicted only.
    """
    from hwnas.profile import BackendConfig, make_backend

    predicted, prediction = None, None
    if table:
        from hwnas.latency import LatencyModel

        lm = LatencyModel.load(table)
        pred = lm.predict(arch, space=space)
        predicted = float(pred.latency_ms)
        prediction = {"table": str(table), "calibrated": pred.calibrated, "lut_sum_ms": pred.lut_sum_ms,
                      "estimated_keys": list(pred.estimated), "table_host": lm.table.device.get("host"),
                      "table_processor": lm.table.device.get("processor"),
                      "table_backend": lm.table.device.get("backend")}
        if lm.table.device.get("backend") == "remote" and commands is None:
            return None, prediction["table_processor"] or "", predicted, prediction
        config = BackendConfig.from_header(lm.table.device, commands=commands, origin=f"latency table {table}")
    else:
        config = BackendConfig(backend="ort-cpu", threads=1)
    if config.batch != 1 and not dynamic_batch:
        raise InputError(f"latency table {table} was measured at batch {config.batch}; add --dynamic-batch so the "
                         f"exported model can be measured at that batch.")
    backend = make_backend(config)
    if not backend.runs_onnx:
        raise InputError(f"latency table {table} was measured with backend {config.backend}, which cannot time an "
                         f"ONNX file; use a table measured with ort-cpu or remote.")
    processor = (prediction or {}).get("table_processor") if config.backend == "remote" else backend.processor()
    return config, processor or "", predicted, prediction


def _prepare(space: SearchSpace, arch: dict[str, Any], *, options: ExportOptions, weights: str | None,
             data: str | None, table: str | None, commands: Any) -> _Prepared:
    from hwnas.train import check_same_arch, load_dataset, preprocessing_record, read_weights

    if options.int8 == "static" and not data:
        raise InputError("--int8 static needs --data (calibration batches from the training split).")
    resolution = int(arch["resolution"])
    config, processor, predicted, prediction = _latency_settings(space, arch, table=table,
                                                                 dynamic_batch=options.dynamic_batch,
                                                                 commands=commands)
    state, trained_arch, extra = None, None, {}
    if weights:
        state, trained_arch, extra = read_weights(weights)
    source = f"--weights file {weights}"
    model = build_for_export(space, arch, state=state, source=source, seed=options.seed)
    if trained_arch is not None:
        check_same_arch(trained_arch, arch, source=source)

    pre = extra.get("preprocessing")
    pre = None if pre is None else {**pre, "resolution": resolution}  # weights may run at another size
    ds = None
    if data:
        seed = int((extra.get("config") or {}).get("seed", 0))
        ds = load_dataset(data, seed=seed, limit=options.data_limit)
        if state is not None and ds.num_classes != arch["num_classes"]:  # without weights: calibration only
            raise InputError(f"--data {data} has {ds.num_classes} classes, but the architecture has "
                             f"num_classes {arch['num_classes']}.")
        if pre is not None:
            if len(pre["mean"]) != len(ds.mean):
                raise InputError(f"--data {data} has {len(ds.mean)} channel(s), but the weights were trained on "
                                 f"{len(pre['mean'])}-channel images.")
            ds = dataclasses.replace(ds, mean=tuple(pre["mean"]), std=tuple(pre["std"]))  # training's normalization
        else:
            pre = preprocessing_record(ds, resolution=resolution)
    return _Prepared(model=model, trained=state is not None, extra=extra, ds=ds, preprocessing=pre, config=config,
                     processor=processor, predicted_ms=predicted, prediction=prediction)


def _parity_json(name: str, parity) -> dict[str, Any]:
    return {"file": name, "max_abs_diff": parity.max_abs_diff, "atol": parity.atol, "inputs": parity.inputs,
            "batch_sizes": list(parity.batch_sizes), "output_scale": parity.output_scale}


@dataclass
class _Build:
    """What the stages have produced so far, in the staging folder."""

    folder: Path
    files: list[str] = field(default_factory=list)
    verification: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    int8: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _stage_int8(b: _Build, p: _Prepared, onnx_path: Path, meta: dict[str, Any], *, options: ExportOptions,
                resolution: int, fp32_preds) -> Path:
    from hwnas.export.quantize import SplitCalibrationReader, quantize
    from hwnas.export.verify import accuracy, onnx_predictions

    q_path = b.folder / f"{options.name}.int8.onnx"
    calib = None
    if options.int8 == "static":
        calib = SplitCalibrationReader(p.ds.train, p.ds, resolution=resolution, count=options.calibration_size)
    quantize(onnx_path, q_path, mode=options.int8, calibration=calib)
    qmeta = {"mode": options.int8, "tool": "onnxruntime.quantization", "per_channel": True,
             "format": ("QDQ, uint8 activations, int8 weights" if options.int8 == "static"
                        else "dynamic (ConvInteger/MatMulInteger), int8 weights"),
             "calibration_images": calib.count if calib is not None else None}
    write_metadata(q_path, {**meta, "quantization": qmeta})
    check_onnx(q_path)
    b.int8 = {**qmeta, "file": q_path.name}
    if fp32_preds is not None:
        q_preds = onnx_predictions(q_path, p.ds.val, p.ds, resolution=resolution,
                                   batch=None if options.dynamic_batch else 1)
        b.int8.update(accuracy_before=b.accuracy["onnx"], accuracy_after=accuracy(q_preds, p.ds.val.labels),
                      top1_agreement=float((q_preds == fp32_preds).mean()))
        b.accuracy["int8"] = b.int8["accuracy_after"]
    if options.int8 == "dynamic":
        b.notes.append("Dynamic int8 convolutions run as ConvInteger, which ONNX Runtime's x86 CPU kernels often "
                       "execute slower than fp32: the measured number is reported as is.")
    b.files.append(q_path.name)
    return q_path


def _assemble(b: _Build, space: SearchSpace, arch: dict[str, Any], p: _Prepared, *, options: ExportOptions,
              weights: str | None, data: str | None, bar) -> dict[str, Any]:
    from hwnas.export.card import file_entries, latency_row, write_card
    from hwnas.export.verify import accuracy, check_parity, onnx_predictions, require_parity, torch_predictions
    from hwnas.latency import utc_now
    from hwnas.profile import measure_onnx_file
    from hwnas.space import CostCounter

    name, res, dyn = options.name, int(arch["resolution"]), options.dynamic_batch
    input_shape = [1, 3, res, res]  # N, C, H, W of the export (and of the verification at batch 1)
    meta_shape: list[Any] = ["N", 3, res, res] if dyn else input_shape

    def stage(label: str) -> None:
        bar.set_postfix_str(label, refresh=True)

    stage("onnx")
    onnx_path = b.folder / f"{name}.onnx"
    meta = model_metadata(arch=arch, input_shape=meta_shape, dynamic_batch=dyn, normalization=p.preprocessing)
    parity = export_verified(p.model, onnx_path, input_shape=input_shape, dynamic_batch=dyn, meta=meta,
                             atol=options.atol, seed=options.seed)
    b.files.append(onnx_path.name)
    b.verification.append(_parity_json(onnx_path.name, parity))
    bar.update(1)

    ort_path = None
    if options.ort:
        stage("ort")
        ort_path, ops_config = convert_to_ort(onnx_path, b.folder, platform=options.ort_platform)
        ort_parity = check_parity(p.model, ort_path, input_shape=input_shape[1:], dynamic_batch=dyn,
                                  atol=options.atol, seed=options.seed)
        require_parity(ort_parity, path=ort_path)
        b.files += [ort_path.name] + ([ops_config.name] if ops_config else [])
        b.verification.append(_parity_json(ort_path.name, ort_parity))
        if options.ort_platform != "amd64" and platform.machine() in ("x86_64", "AMD64"):
            b.notes.append(f"The .ort file is optimized for {options.ort_platform} targets (no x86 NCHWc layout); "
                           f"on this x86 CPU it can be slower than the .onnx, which ONNX Runtime optimizes for the "
                           f"CPU at load time.")
        bar.update(1)

    if p.extra.get("accuracy") is not None:
        b.accuracy.update(trained=float(p.extra["accuracy"]), trained_data=(p.extra.get("config") or {}).get("data"))
    fp32_preds = None
    if p.ds is not None and p.trained:
        stage("accuracy")
        labels = p.ds.val.labels
        fp32_preds = onnx_predictions(onnx_path, p.ds.val, p.ds, resolution=res, batch=None if dyn else 1)
        b.accuracy.update(data=data, count=len(p.ds.val), onnx=accuracy(fp32_preds, labels),
                          pytorch=accuracy(torch_predictions(p.model, p.ds.val, p.ds, resolution=res), labels))
        bar.update(1)

    q_path = None
    if options.int8:
        stage(f"int8 {options.int8}")
        q_path = _stage_int8(b, p, onnx_path, meta, options=options, resolution=res, fp32_preds=fp32_preds)
        bar.update(1)

    stage("latency")
    shape = [p.config.batch if p.config else 1, 3, res, res]
    steady = options.steady()

    def measure(path: Path) -> dict[str, Any] | None:
        if p.config is None:
            return None
        return measure_onnx_file(path, input_shape=shape, config=p.config, settings=steady)

    if p.config is None:
        b.notes.append(f"Latency is predicted only: latency table {(p.prediction or {}).get('table')} was measured "
                       f"on a remote device and no --device-config (or --run-cmd) was given, so nothing was "
                       f"measured (hwnas never runs commands from a table).")
    b.rows.append(latency_row("fp32 ONNX", measure(onnx_path), p.predicted_ms))
    if ort_path is not None:
        b.rows.append(latency_row(f"fp32 ORT format ({options.ort_platform})", measure(ort_path), None))
    if q_path is not None:
        b.rows.append(latency_row(f"int8 {options.int8} ONNX", measure(q_path), None))
        b.int8["measured_latency_ms"] = b.rows[-1]["measured_ms"]
    if any(r.get("unstable") for r in b.rows):
        b.notes.append(f"The machine was unstable while measuring: round medians spread more than "
                       f"{steady.max_spread_pct:g} % even after re-measuring, so the measured figure is less certain.")
    table_host = (p.prediction or {}).get("table_host")
    if table_host and p.config is not None and p.config.backend != "remote" and table_host != socket.gethostname():
        b.notes.append(f"The latency table was measured on host {table_host}; this measurement ran on "
                       f"{socket.gethostname()}.")
    bar.update(1)

    stage("card")
    write_json_atomic(b.folder / "arch.json", arch)
    b.files.append("arch.json")
    cost = CostCounter().blocks(space.resolve(arch))
    pred = p.prediction or {}
    cfg = p.config
    latency = {"backend": cfg.backend if cfg else pred.get("table_backend"), "measured": cfg is not None,
               "threads": cfg.threads if cfg else None, "batch": cfg.batch if cfg else None,
               "repeats": steady.rounds * steady.runs_per_round, "warmup": steady.warmup,
               "estimator": steady.to_json() if cfg is not None else None,
               "measured_stat": "steady_ms" if cfg is not None else None, "processor": p.processor,
               "table": pred.get("table"), "prediction": "calibrated LUT sum" if pred.get("calibrated") else "LUT sum",
               "prediction_details": p.prediction, "rows": b.rows, "notes": b.notes}
    card = {"format": "hwnas.model_card/1", "name": name, "created": utc_now(), "hwnas_version": __version__,
            "arch": arch, "params": cost.params, "flops": cost.flops, "weights": str(weights) if weights else None,
            "input": {"name": "input", "shape": meta_shape, "dynamic_batch": dyn},
            "output": {"name": "output", "shape": [meta_shape[0], arch["num_classes"]]},
            "opset": OPSET, "preprocessing": p.preprocessing, "accuracy": b.accuracy or None, "latency": latency,
            "verification": b.verification, "int8": b.int8, "files": file_entries(b.folder, b.files)}
    write_card(b.folder, card)
    bar.update(1)
    return card


def export_model(space: SearchSpace, arch: dict[str, Any], *, out_dir: str | Path, options: ExportOptions,
                 weights: str | None = None, data: str | None = None, table: str | None = None,
                 commands: Any = None, progress: bool = True) -> dict[str, Any]:
    """Exports, verifies, optionally converts/quantizes, measures and documents one architecture.

    Args:
        space: The architecture's space.
        arch: A validated architecture.
        out_dir: Final output folder (``export/NAME``); built next to it and renamed into place.
        options: Export settings.
        weights: A ``hwnas train`` checkpoint or a state_dict file; None exports random weights with
            randomized batch norms (useful for latency only).
        data: Dataset spec for static int8 calibration and held-out accuracy.
        table: Latency table: its latency model predicts, its backend settings measure.
        commands: The user's ``RemoteCommands`` for a table measured on a ``remote`` device; without
            them such a table's latency is predicted only (a table's own commands are never run).
        progress: Show a tqdm bar of the stages on stderr.

    Returns:
        The model card (``card.json``), with ``out`` (the folder) added.

    Raises:
        InputError: bad input, before anything is written.
        hwnas.export.verify.VerificationError: an fp32 file misses the parity tolerance (nothing is kept).
    """
    from tqdm import tqdm

    options.validate()
    out = Path(out_dir)
    check_target(out, force=options.force)
    prepared = _prepare(space, arch, options=options, weights=weights, data=data, table=table, commands=commands)
    n_stages = 3 + int(options.ort) + int(options.int8 is not None) + int(prepared.ds is not None and prepared.trained)
    staging = staging_folder(out)
    bar = tqdm(total=n_stages, desc=f"export {options.name}", unit="stage", file=sys.stderr, disable=not progress)
    try:
        card = _assemble(_Build(folder=staging), space, arch, prepared, options=options, weights=weights, data=data,
                         bar=bar)
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        bar.close()
    return {**card, "out": str(out)}
