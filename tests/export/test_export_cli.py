"""hwnas export end to end: files, card with sha256, latency vs table, dynamic batch; bad input leaves nothing."""

from __future__ import annotations

import hashlib
import json
import socket

import numpy as np
import onnx
import pytest

from hwnas.errors import InputError
from hwnas.export.artifacts import read_metadata
from hwnas.export.pipeline import ExportOptions, export_model
from hwnas.export.verify import VerificationError
from hwnas.latency.table import LatencyTable
from hwnas.profile.onnx_io import ort_session
from hwnas.space.blocks import op_key
from hwnas.space.build import build_model
from hwnas.train.checkpoint import save_checkpoint
from tests.conftest import TOY_SPACE, cli_json, run_cli


def _toy_arch(toy_space, **kw):
    return toy_space.preset("big", resolution=16, num_classes=10, **kw)


def _write_arch(tmp_path, arch, name="arch.json"):
    path = tmp_path / name
    path.write_text(json.dumps(arch))
    return path


def test_cli_export_ort_dynamic_batch_with_table(tmp_path, toy_space):
    arch = _toy_arch(toy_space)
    keys = [op_key(b) for b in toy_space.resolve(arch)]  # stem, l1 (k5), l2 (k3), l3 (k5 = l1's key), logits
    ms = {keys[0]: 1.0, keys[1]: 2.0, keys[2]: 3.0, keys[4]: 5.0}
    entries = {k: {"median_ms": v, "mean_ms": v, "std_ms": 0.0, "p10_ms": v, "p90_ms": v, "count": 1}
               for k, v in ms.items()}
    table = tmp_path / "table.json"
    LatencyTable(device={"name": "here", "backend": "ort-cpu", "threads": 1, "batch": 1, "dtype": "float32",
                         "resolution": 16, "host": socket.gethostname()}, entries=entries).save(table)
    out = tmp_path / "export" / "toy"
    data = cli_json("export", "--arch", str(_write_arch(tmp_path, arch)), "--space", str(TOY_SPACE), "--out", str(out),
                    "--ort", "--dynamic-batch", "--table", str(table), "--repeats", "5", "--warmup", "1")
    # contract fields
    assert data["onnx"] == str(out / "toy.onnx") and data["max_abs_diff"] <= 1e-4
    assert data["predicted_latency_ms"] == 13.0  # 1 + 2 + 3 + 2 + 5, by hand
    assert data["measured_latency_ms"] > 0
    assert data["relative_error"] == pytest.approx((13.0 - data["measured_latency_ms"]) / data["measured_latency_ms"])
    assert data["ort"]["max_abs_diff"] <= 1e-4 and data["ort"]["measured_latency_ms"] > 0
    assert data["latency"]["backend"] == "ort-cpu" and data["latency"]["threads"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "card.json", "card.md", "toy.onnx", "toy.ort",
                                                      "toy.required_operators.config"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    # the card lists every file with its real sha256
    card = json.loads((out / "card.json").read_text())
    for f in card["files"]:
        assert hashlib.sha256((out / f["file"]).read_bytes()).hexdigest() == f["sha256"]
    assert {f["file"] for f in card["files"]} == {"arch.json", "toy.onnx", "toy.ort", "toy.required_operators.config"}
    assert card["params"] == data["params"] > 0 and card["accuracy"] is None
    md = (out / "card.md").read_text()
    assert "| fp32 ONNX | 13.000 ms |" in md and card["files"][0]["sha256"] in md
    # the measured number is the steady estimator's (5 runs -> 1 round of 5), with its estimator and spread
    est, fp32 = card["latency"]["estimator"], card["latency"]["rows"][0]
    assert est["name"] == data["estimator"]["name"] == "steady/q0-of-round-medians" and est["runs_per_round"] == 5
    assert card["latency"]["measured_stat"] == "steady_ms" and fp32["latency_source"] == "measured"
    assert fp32["measured_ms"] == data["measured_latency_ms"] and fp32["spread_pct"] == data["measured_spread_pct"]
    assert fp32["estimator"] == est["name"] and fp32["median_ms"] > 0
    assert "measured (steady)" in md and "steady figure of estimator `steady/q0-of-round-medians`" in md
    # a checked, dynamic-batch, self-describing model
    onnx.checker.check_model(str(out / "toy.onnx"), full_check=True)
    dims = onnx.load(str(out / "toy.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 16, 16]
    assert ort_session(out / "toy.onnx").run(None, {"input": np.zeros((3, 3, 16, 16), np.float32)})[0].shape == (3, 10)
    meta = read_metadata(out / "toy.ort")
    assert meta["arch"] == arch and meta["input_shape"] == ["N", 3, 16, 16] and meta["normalization"] is None
    assert json.loads((out / "arch.json").read_text()) == arch


def test_cli_bad_input_exits_2_and_leaves_nothing(tmp_path, toy_space):
    arch = _toy_arch(toy_space)
    bad = _write_arch(tmp_path, {**arch, "choices": {**arch["choices"], "l2": "k7"}}, "bad.json")
    r = run_cli("export", "--arch", str(bad), "--space", str(TOY_SPACE), "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "choices.l2: 'k7' is not an option" in r.stderr and r.stdout == ""
    assert not (tmp_path / "a").exists()

    # weights of another architecture: the first tensor that does not fit is named
    small = build_model(toy_space.resolve(toy_space.preset("small", resolution=16, num_classes=10)))
    weights = save_checkpoint(tmp_path / "w.pt", small.state_dict())
    r = run_cli("export", "--arch", str(_write_arch(tmp_path, arch)), "--space", str(TOY_SPACE),
                "--weights", str(weights), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and r.stdout == ""
    assert "does not fit the architecture: tensor blocks.1." in r.stderr
    assert "(16, 1, 5, 5) in the architecture" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def _export(toy_space, out, **kw):
    arch = _toy_arch(toy_space)
    options = ExportOptions(name=out.name, repeats=2, warmup=0, **kw.pop("options", {}))
    return export_model(toy_space, arch, out_dir=out, options=options, progress=False, **kw)


def test_existing_folder_force_and_failed_verification(tmp_path, toy_space):
    out = tmp_path / "m"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(InputError, match="exists and is not empty; pass --force"):
        _export(toy_space, out)
    with pytest.raises(InputError, match="--int8 static needs --data"):
        _export(toy_space, tmp_path / "n", options={"int8": "static"})
    with pytest.raises(InputError, match="--name"):
        _export(toy_space, tmp_path / "bad name")
    blocker = tmp_path / "file"  # an output folder that cannot be created: its parent is a file
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"^--out .*file/c cannot be written"):
        _export(toy_space, blocker / "c")
    blocker.unlink()
    # a tolerance no float computation meets: exit 1 (VerificationError) saying by how much, old folder untouched
    with pytest.raises(VerificationError, match=r"m\.onnx differs from PyTorch by max \|diff\| \S+, \S+ above the "
                                                r"tolerance 1e-12"):
        _export(toy_space, out, options={"force": True, "atol": 1e-12})
    assert (out / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging folder, no 'n'
    card = _export(toy_space, out, options={"force": True})
    assert not (out / "old.txt").exists() and (out / "m.onnx").is_file() and card["out"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_dynamic_int8_reports_measured_latency(tmp_path, toy_space):
    card = _export(toy_space, tmp_path / "q", options={"int8": "dynamic"})
    rows = {r["model"]: r for r in card["latency"]["rows"]}
    assert set(rows) == {"fp32 ONNX", "int8 dynamic ONNX"}
    assert card["int8"]["measured_latency_ms"] == rows["int8 dynamic ONNX"]["measured_ms"] > 0
    assert "accuracy_after" not in card["int8"]  # no weights, no data: no accuracy claimed
    assert read_metadata(tmp_path / "q" / "q.int8.onnx")["quantization"]["mode"] == "dynamic"
    # the int8 file is quantized (integer kernels), and computes what the fp32 file computes: on 32
    # random images its logits stay within 10% of the fp32 logits' spread, while different images'
    # fp32 logits differ by several times that error (a constant or mis-scaled model fails)
    fp32, int8 = (ort_session(tmp_path / "q" / name) for name in ("q.onnx", "q.int8.onnx"))
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / "q.int8.onnx")).graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}, ops
    xs = np.random.default_rng(0).standard_normal((32, 1, 3, 16, 16)).astype(np.float32)
    want = np.concatenate([fp32.run(None, {"input": x})[0] for x in xs])  # 32, 10
    got = np.concatenate([int8.run(None, {"input": x})[0] for x in xs])
    scale = float(want.max() - want.min())
    err = float(np.abs(got - want).max())
    assert scale > 0 and err <= 0.1 * scale, (err, scale)
    between = float(np.abs(want - want.mean(axis=0)).max())  # how much images change the logits
    assert between > 3 * err, (between, err)
