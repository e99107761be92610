"""Int8 with ONNX Runtime's tools: calibration batches from --data, QDQ static and dynamic graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

from hwnas.export.artifacts import build_for_export
from hwnas.export.quantize import SplitCalibrationReader, quantize
from hwnas.profile.onnx_io import export_onnx, ort_session
from hwnas.space.build import build_model
from hwnas.train.data import batches, load_dataset, preprocess


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


def _trained_state(space, arch, ds, *, resolution, epochs=30):
    """A few seconds of Adam on train + arch: a reference whose predictions differ between images."""
    torch.manual_seed(0)
    net = build_model(space.resolve(arch)).train()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for epoch in range(epochs):
        for x, y in batches(ds.trainval, ds, batch_size=40, resolution=resolution, seed=0, epoch=epoch):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.state_dict()


def test_static_and_dynamic_graphs(tmp_path, toy_space, digits):
    arch = toy_space.preset("big", resolution=16, num_classes=10)
    state = _trained_state(toy_space, arch, digits, resolution=16)
    model = build_for_export(toy_space, arch, state=state, source="test", seed=0)
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

    # both run and stay close to fp32 on real (preprocessed) held-out digits
    x = preprocess(digits.val.images[:64], resolution=16, mean=digits.mean, std=digits.std).contiguous().numpy()
    labels = digits.val.labels[:64].numpy()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    ref_top1 = ref.argmax(1)
    # a reference that tells images apart (the untrained one said "3" to all 64): agreement can fail
    assert (ref_top1 == labels).mean() >= 0.7 and len(set(ref_top1.tolist())) >= 8
    scale = ref.std()
    # measured (fp32 top-1 0.89): dynamic rms error 0.11 of the logits' spread, agreement 0.97, top-1 0.91;
    # static (QDQ, 32 calibration images) 0.58, 0.77 and 0.78: this 8-channel net loses 11 points to static
    # int8. Calibrating on zeros instead: agreement about 0.1.
    for path, max_rel, min_agree in ((static, 0.8, 0.7), (dynamic, 0.2, 0.9)):
        s = ort_session(path)
        out = np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
        rel = np.sqrt(np.mean((out - ref) ** 2)) / scale  # logit error relative to the logits' spread
        assert rel < max_rel, (path.name, rel)
        assert (out.argmax(1) == ref_top1).mean() >= min_agree, path.name
        assert (out.argmax(1) == labels).mean() >= 0.6, path.name  # chance: 0.1


def test_static_needs_calibration(tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        quantize(tmp_path / "a.onnx", tmp_path / "b.onnx", mode="static")
