"""Train → export: the ONNX model, fed with only what its metadata says, is exactly as accurate on the
held-out digits as the trained PyTorch model; static int8 calibrated on digits stays close."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwnas.export.artifacts import read_metadata
from hwnas.profile.onnx_io import ort_session
from hwnas.train.data import load_dataset
from tests.conftest import TOY_SPACE, cli_json


def _deploy_preprocess(images: torch.Tensor, norm: dict) -> np.ndarray:
    """Preprocessing written from the metadata alone, as a deployment would (not hwnas.train.data.preprocess)."""
    r = norm["resolution"]
    x = images.float() / 255.0  # N, 1, 8, 8
    x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=x.shape[-1] > r)
    x = (x - torch.tensor(norm["mean"]).view(1, -1, 1, 1)) / torch.tensor(norm["std"]).view(1, -1, 1, 1)
    if norm["grayscale_to_rgb"] == "repeat":
        x = x.repeat(1, 3, 1, 1)
    return x.numpy().astype(np.float32)


@pytest.mark.slow
def test_train_then_export_same_accuracy_and_static_int8(tmp_path, toy_space):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(toy_space.preset("big", resolution=16, num_classes=10)))
    run = tmp_path / "run"
    trained = cli_json("train", "--arch", str(arch), "--space", str(TOY_SPACE), "--data", "digits", "--epochs", "2",
                       "--lr", "0.1", "--batch-size", "32", "--seed", "1", "--out", str(run))
    assert trained["accuracy"] > 0.5 and trained["val_count"] == 359

    out = tmp_path / "export" / "digits-toy"
    exp = cli_json("export", "--weights", trained["checkpoint"], "--space", str(TOY_SPACE), "--data", "digits",
                   "--int8", "static", "--calibration-size", "100", "--out", str(out), "--repeats", "5")
    acc = exp["accuracy"]
    assert acc["count"] == 359 and acc["trained"] == trained["accuracy"]
    assert acc["pytorch"] == trained["accuracy"] and acc["onnx"] == trained["accuracy"]

    # independently: run the exported file over the held-out split with the metadata's preprocessing
    meta = read_metadata(out / "digits-toy.onnx")
    norm = meta["normalization"]
    assert norm["dataset"] == "digits" and norm["stored_channels"] == 1 and meta["input_shape"] == [1, 3, 16, 16]
    val = load_dataset("digits").val  # the held-out split does not depend on the seed
    x = _deploy_preprocess(val.images, norm)
    session = ort_session(out / "digits-toy.onnx")
    preds = np.array([session.run(None, {"input": x[i:i + 1]})[0].argmax() for i in range(len(x))])
    assert float((preds == val.labels.numpy()).mean()) == trained["accuracy"]

    int8 = exp["int8"]
    assert int8["mode"] == "static" and int8["calibration_images"] == 100
    assert int8["accuracy_before"] == acc["onnx"]
    assert abs(int8["accuracy_after"] - int8["accuracy_before"]) <= 0.05 and int8["top1_agreement"] >= 0.9
    assert int8["measured_latency_ms"] > 0 and exp["measured_latency_ms"] > 0
    card = (out / "card.md").read_text()
    assert "| ONNX int8 (static) |" in card and "grayscale repeated to 3 channels" in card
