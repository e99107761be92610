"""Int8 with ONNX Runtime's tools: calibration batches from --data, QDQ static and dynamic graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from hwnas.export.artifacts import build_for_export
from hwnas.export.quantize import SplitCalibrationReader, quantize
from hwnas.profile.onnx_io import export_onnx, ort_session
from hwnas.train.data import load_dataset, preprocess


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=100)


def test_calibration_reader_feeds_preprocessed_training_images(digits):
    reader = SplitCalibrationReader(digits.train, digits, resolution=16, count=10, batch=1)
    assert len(reader) == 10
    got = []
    while (item := reader.get_next()) is not None:
        got.append(item["input"])
    assert len(got) == 10 and all(x.shape == (1, 3, 16, 16) and x.dtype == np.float32 for x in got)
    expected = preprocess(digits.train.images[:10], resolution=16, mean=digits.mean, std=digits.std).numpy()
    np.testing.assert_allclose(np.concatenate(got), expected, rtol=0, atol=1e-6)  # stored order, training preprocessing
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["input"], got[0])
    # batches of 4 out of 10 images: two full batches, the remainder is not fed
    four = SplitCalibrationReader(digits.train, digits, resolution=16, count=10, batch=4)
    assert four.count == 8 and len(four) == 2
    assert [four.get_next()["input"].shape[0] for _ in range(2)] == [4, 4] and four.get_next() is None


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_static_and_dynamic_graphs(tmp_path, toy_space, digits):
    arch = toy_space.preset("big", resolution=16, num_classes=10)
    model = build_for_export(toy_space, arch, state=None, source="", seed=0)
    src = export_onnx(model, (1, 3, 16, 16), tmp_path / "fp32.onnx")
    static = quantize(src, tmp_path / "static.onnx", mode="static",
                      calibration=SplitCalibrationReader(digits.train, digits, resolution=16, count=32))
    ops = _ops(static)
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = {i.name: i for i in onnx.load(str(static)).graph.initializer}
    assert any(w.data_type == onnx.TensorProto.INT8 and len(w.dims) == 4 for w in weights.values())  # int8 conv weights
    dynamic = quantize(src, tmp_path / "dynamic.onnx", mode="dynamic")
    assert {"ConvInteger", "DynamicQuantizeLinear"} <= _ops(dynamic)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamic.onnx", "fp32.onnx", "static.onnx"]  # no scratch left

    # both run and stay close to fp32 on real (preprocessed) digits: same top-1 on most images
    x = preprocess(digits.val.images[:64], resolution=16, mean=digits.mean, std=digits.std).contiguous().numpy()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().argmax(1)
    for path in (static, dynamic):
        s = ort_session(path)
        pred = np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))]).argmax(1)
        assert (pred == ref).mean() >= 0.8, path.name


def test_static_needs_calibration(tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        quantize(tmp_path / "a.onnx", tmp_path / "b.onnx", mode="static")
