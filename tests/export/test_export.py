"""Export + verification: ONNX Runtime matches PyTorch for every space (non-trivial BN statistics),
metadata round trips through .onnx and .ort, and a wrong model is caught."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from hwnas.export.artifacts import (build_for_export, convert_to_ort, export_verified, model_metadata,
                                    read_metadata, write_metadata)
from hwnas.export.verify import ATOL, VerificationError, check_parity, randomize_batchnorm, require_parity
from hwnas.profile.onnx_io import export_onnx, ort_session
from hwnas.space.build import build_model
from hwnas.space.loader import load_space, space_names


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in space_names() if n != "darts-c36"])  # darts's cells at C = 36
def test_every_space_preset_exports_within_tolerance(tmp_path, name):
    sp = load_space(name)
    # NAS-Bench-201's all-conv cell sums 6 paths per cell: random BN statistics grow its logits to O(1e3)
    preset = "resnet" if name == "nasbench201" else sp.presets[0]
    arch = sp.preset(preset, resolution=32, width_mult=0.25, num_classes=10)
    model = build_for_export(sp, arch, state=None, source="", seed=0)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(float(bn.running_var.min()) >= 0.5 and float(bn.running_mean.abs().max()) > 0.1 for bn in bns)
    path = tmp_path / f"{name}.onnx"
    meta = model_metadata(arch=arch, input_shape=[1, 3, 32, 32], dynamic_batch=False, normalization=None)
    parity = export_verified(model, path, input_shape=[1, 3, 32, 32], dynamic_batch=False, meta=meta, atol=ATOL, seed=0)
    assert parity.max_abs_diff <= 1e-4 and parity.batch_sizes == (1,) and parity.inputs == 8
    assert parity.output_scale > 0.1  # logits are O(1), so an absolute tolerance of 1e-4 means something
    m = onnx.load(str(path))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]
    assert not list(tmp_path.glob("*.data"))  # one self-contained file


def test_randomized_bn_changes_the_function_and_a_wrong_model_is_caught(tmp_path, toy_space):
    arch = toy_space.preset("big", resolution=16, num_classes=10)
    torch.manual_seed(0)
    model = build_model(toy_space.resolve(arch)).eval()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    assert randomize_batchnorm(model, seed=3) == 10  # stem 1 + three mbconv (expand, depthwise, project) 3 x 3
    assert not torch.allclose(before, model(x))
    path = export_onnx(model, (1, 3, 16, 16), tmp_path / "m.onnx")
    ok = check_parity(model, path, input_shape=(3, 16, 16), dynamic_batch=False)
    assert ok.passed
    # a BatchNorm the runtime would fold with a slightly different variance must fail the check
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        bn.running_var.mul_(1.01)
    bad = check_parity(model, path, input_shape=(3, 16, 16), dynamic_batch=False)
    assert not bad.passed and bad.max_abs_diff > 10 * ATOL
    with pytest.raises(VerificationError, match=r"m\.onnx differs from PyTorch by max \|diff\| .* above the tolerance"):
        require_parity(bad, path=path)


def test_metadata_round_trip_onnx_and_ort(tmp_path, toy_space):
    arch = toy_space.preset("big", resolution=16, num_classes=10)
    model = build_for_export(toy_space, arch, state=None, source="", seed=1)
    pre = {"mean": [0.3], "std": [0.37], "resolution": 16, "stored_channels": 1, "grayscale_to_rgb": "repeat"}
    meta = model_metadata(arch=arch, input_shape=["N", 3, 16, 16], dynamic_batch=True, normalization=pre)
    path = tmp_path / "toy.onnx"
    parity = export_verified(model, path, input_shape=[1, 3, 16, 16], dynamic_batch=True, meta=meta, atol=ATOL, seed=0)
    assert parity.batch_sizes == (8, 1)
    back = read_metadata(path)
    assert back == meta and back["arch"] == arch and back["normalization"]["mean"] == [0.3]
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["hwnas.space"] == "toy" and props["hwnas.version"] == meta["version"]

    # rewriting replaces hwnas keys and keeps foreign ones
    m = onnx.load(str(path))
    m.metadata_props.add(key="author", value="me")
    onnx.save(m, str(path))
    write_metadata(path, {**meta, "dynamic_batch": True, "space": "toy"})
    props = [p.key for p in onnx.load(str(path)).metadata_props]
    assert props.count("hwnas.arch") == 1 and "author" in props

    # .ort: the mobile format carries the same metadata and the same function, at any batch size
    ort_path, ops = convert_to_ort(path, tmp_path)
    assert ort_path.suffix == ".ort" and ops is not None and "Conv" in ops.read_text()
    assert read_metadata(ort_path) == meta
    assert check_parity(model, ort_path, input_shape=(3, 16, 16), dynamic_batch=True).passed
    s = ort_session(ort_path)
    assert s.run(None, {"input": np.zeros((3, 3, 16, 16), np.float32)})[0].shape == (3, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.onnx", "toy.ort", "toy.required_operators.config"]
