"""LatencyModel: hand-checked table sums on the toy space, estimated blocks, --strict, resolution."""

from __future__ import annotations

import json

import pytest

from hwnas.errors import InputError
from hwnas.latency.calibration import Calibration, calibration_path, table_fingerprint
from hwnas.latency.model import LatencyModel
from hwnas.latency.table import LatencyTable
from tests.conftest import TOY_SPACE, cli_json

CONV = "Conv-input:8x8x3-output:8x8x8"
K3 = "expanded_conv-input:8x8x8-output:8x8x8-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0"
K5 = "expanded_conv-input:8x8x8-output:8x8x8-expand:16-kernel:5-stride:1-idskip:1-se:0-hs:0"
LOGITS = "Logits-input:8x8x8-output:4"
HAND = {CONV: 1.0, K3: 2.0, K5: 3.0, LOGITS: 0.5}  # ms


def hand_table(entries=HAND, resolution=8) -> LatencyTable:
    return LatencyTable(device={"backend": "ort-cpu", "threads": 1, "resolution": resolution},
                        entries={k: {"median_ms": v} for k, v in entries.items()}, created="2026-01-01T00:00:00Z")


def test_toy_sums_by_hand(toy_space):
    model = LatencyModel.from_table(hand_table())
    big = model.predict(toy_space.preset("big"), space=toy_space)  # k5, k3, k5
    assert big.lut_sum_ms == pytest.approx(1.0 + 3.0 + 2.0 + 3.0 + 0.5)
    assert big.latency_ms == big.lut_sum_ms and not big.calibrated and big.estimated == []
    assert [r["ms"] for r in big.per_block] == [1.0, 3.0, 2.0, 3.0, 0.5]
    assert {r["source"] for r in big.per_block} == {"table"}
    small = model.predict(toy_space.preset("small"), space=toy_space)  # k3, skip, skip
    assert small.lut_sum_ms == pytest.approx(1.0 + 2.0 + 0.5)
    assert small.num_blocks == 3
    assert [r["source"] for r in small.per_block] == ["table", "table", "free", "free", "table"]


def test_calibration_applied_by_hand(toy_space):
    table = hand_table()
    cal = Calibration(features=("lut_sum_ms", "num_blocks"), coef=(0.5, -0.1), intercept_ms=0.2,
                      table=table_fingerprint(table))
    pred = LatencyModel.from_table(table, calibration=cal).predict(toy_space.preset("big"), space=toy_space)
    assert pred.calibrated and pred.lut_sum_ms == pytest.approx(9.5)
    assert pred.latency_ms == pytest.approx(0.5 * 9.5 - 0.1 * 5 + 0.2)


def test_missing_block_is_estimated_and_reported(toy_space):
    model = LatencyModel.from_table(hand_table({k: v for k, v in HAND.items() if k != K5}))
    pred = model.predict(toy_space.preset("big"), space=toy_space)
    assert pred.estimated == [K5]  # once, though two layers use it
    est = [r for r in pred.per_block if r["source"] == "estimated"]
    assert [r["key"] for r in est] == [K5, K5] and est[0]["ms"] > 0
    assert pred.lut_sum_ms == pytest.approx(1.0 + 2.0 + 0.5 + 2 * est[0]["ms"])
    with pytest.raises(InputError, match="strict") as exc:
        model.predict(toy_space.preset("big"), space=toy_space, strict=True)
    assert K5 in str(exc.value)
    # nothing missing: strict is fine
    assert model.predict(toy_space.preset("small"), space=toy_space, strict=True).lut_sum_ms == pytest.approx(3.5)


def test_family_absent_from_table_cannot_be_estimated(toy_space):
    model = LatencyModel.from_table(hand_table({CONV: 1.0, LOGITS: 0.5}))
    with pytest.raises(InputError, match="cannot estimate .*expanded_conv"):
        model.predict(toy_space.preset("big"), space=toy_space)


def test_table_at_another_resolution_is_refused(toy_space):
    model = LatencyModel.from_table(hand_table(resolution=16))
    with pytest.raises(InputError, match="resolution 16.*at 8"):
        model.predict(toy_space.preset("big"), space=toy_space)


def test_load_uses_calibration_next_to_table_and_refuses_a_stale_one(tmp_path, toy_space):
    table = hand_table()
    path = tmp_path / "dev.json"
    table.save(path)
    assert LatencyModel.load(path).calibration is None
    cal = Calibration(features=("lut_sum_ms", "num_blocks"), coef=(1.0, 0.0), intercept_ms=1.0,
                      table=table_fingerprint(table))
    cal.save(calibration_path(path))
    assert calibration_path(path) == tmp_path / "dev.calibration.json"
    model = LatencyModel.load(path)
    assert model.predict(toy_space.preset("small"), space=toy_space).latency_ms == pytest.approx(4.5)
    assert LatencyModel.load(path, calibration=False).calibration is None
    changed = hand_table({**HAND, CONV: 1.5})  # re-profiled: the calibration no longer applies
    changed.save(path)
    with pytest.raises(InputError, match="another latency table"):
        LatencyModel.load(path)


def _write_toy(tmp_path, entries=HAND):
    table = tmp_path / "toy_table.json"
    hand_table(entries).save(table)
    arch = tmp_path / "big.json"
    arch.write_text(json.dumps({"space": "toy", "resolution": 8,
                                "choices": {"l1": "k5", "l2": "k3", "l3": "k5"}}))
    return table, arch


def test_cli_predict_json(tmp_path):
    table, arch = _write_toy(tmp_path)
    data = cli_json("latency", "predict", "--table", str(table), "--arch", str(arch), "--space", str(TOY_SPACE))
    assert data["latency_ms"] == pytest.approx(9.5) and data["missing"] == [] and data["calibrated"] is False
    assert [b["ms"] for b in data["per_block"]] == [1.0, 3.0, 2.0, 3.0, 0.5]


def test_cli_predict_estimates_and_strict(tmp_path, capsys):
    from hwnas.cli.main import main

    table, arch = _write_toy(tmp_path, {k: v for k, v in HAND.items() if k != K5})
    args = ["latency", "predict", "--table", str(table), "--arch", str(arch), "--space", str(TOY_SPACE), "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["missing"] == [K5] and data["estimated"] == [K5]
    assert [b["source"] for b in data["per_block"]] == ["table", "estimated", "table", "estimated", "table"]
    assert main(args + ["--strict"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and K5 in out.err and out.err.count("\n") == 1
