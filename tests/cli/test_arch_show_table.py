"""``hwnas arch show --table T`` takes resolution, width and class count from the table's header."""

from __future__ import annotations

import json

from hwnas.cli.main import main
from tests.conftest import ROOT

R32 = str(ROOT / "latency_tables" / "cpu-ort-1t_r32.json")  # 32 px, width 1.0, 10 classes


def _show(capsys, *args: str) -> tuple[int, dict | None, str]:
    rc = main(["arch", "show", *args, "--json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else None), out.err


def test_preset_takes_the_tables_settings(capsys):
    rc, d, err = _show(capsys, "--space", "mobilenetv2", "--preset", "mobilenet_v2", "--table", R32)
    assert rc == 0, err
    assert (d["arch"]["resolution"], d["arch"]["width_mult"], d["arch"]["num_classes"]) == (32, 1.0, 10)
    assert d["latency_ms"] > 0 and d["blocks"][-1]["key"] == "Logits-input:1x1x1280-output:10"


def test_arch_file_without_settings_takes_the_tables_and_flags_still_win(capsys, tmp_path):
    from hwnas.space import load_space

    sp = load_space("mobilenetv2")
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"space": "mobilenetv2", "choices": sp.preset("mobilenet_v2")["choices"]}))
    rc, d, err = _show(capsys, "--arch", str(f), "--table", R32)
    assert rc == 0, err
    assert (d["arch"]["resolution"], d["arch"]["num_classes"]) == (32, 10)
    rc, _, err = _show(capsys, "--space", "mobilenetv2", "--preset", "mobilenet_v2", "--table", R32,
                       "--num-classes", "1000")
    assert rc == 2 and "Logits-input:1x1x1280-output:1000" in err  # the flag wins: that key is not in the table


def test_latency_is_the_calibrated_prediction_and_the_plain_sum_is_reported(capsys):
    from hwnas.latency import LatencyModel
    from hwnas.latency.calibration import calibration_path

    assert calibration_path(R32).exists()  # the shipped table has a calibration
    rc, d, err = _show(capsys, "--space", "mobilenetv2", "--preset", "mobilenet_v2", "--table", R32)
    assert rc == 0, err
    assert d["lut_sum_ms"] == sum(b["latency_ms"] for b in d["blocks"])  # the per-block rows add up
    model = LatencyModel.load(R32)
    cal = model.calibration
    by_hand = cal.apply(lut_sum_ms=d["lut_sum_ms"], num_blocks=sum(b["key"] is not None for b in d["blocks"]))
    assert d["calibrated"] is True and abs(d["latency_ms"] - by_hand) < 1e-9
    assert abs(d["latency_ms"] - d["lut_sum_ms"]) > 0.05  # they differ on this table: the search uses the first
