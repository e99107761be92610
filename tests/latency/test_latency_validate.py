"""Validation and calibration end to end: a real ort-cpu table of the toy space, real CLI runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.errors import InputError
from hwnas.latency.calibration import Calibration, calibration_path
from hwnas.latency.table import LatencyTable
from hwnas.latency.validate import CALIBRATION_STREAM, VALIDATION_STREAM, error_stats, sample_archs
from hwnas.space.arch import ArchSettings, arch_id
from tests.conftest import TOY_SPACE, cli_json


def test_error_stats_by_hand():
    s = error_stats([105.0, 92.0, 100.0, 120.0], [100.0, 100.0, 100.0, 100.0])  # errors +5, -8, 0, +20 %
    assert s["n"] == 4
    assert s["within_5pct"] == 0.5 and s["within_10pct"] == 0.75
    assert s["rmse_pct"] == pytest.approx(np.sqrt((25 + 64 + 0 + 400) / 4))
    assert s["mape"] == pytest.approx(33 / 4) and s["bias_pct"] == pytest.approx(17 / 4)
    assert s["max_abs_pct"] == pytest.approx(20.0)


def test_samples_are_distinct_disjoint_and_seeded(toy_space):
    settings = ArchSettings(resolution=8, width_mult=1.0, num_classes=4)
    val = sample_archs(toy_space, n=5, seed=3, stream=VALIDATION_STREAM, settings=settings)
    ids = [arch_id(toy_space, a) for a in val]
    assert len(set(ids)) == 5
    cal = sample_archs(toy_space, n=7, seed=3, stream=CALIBRATION_STREAM, settings=settings, exclude=ids)
    assert not set(ids) & {arch_id(toy_space, a) for a in cal}
    assert val == sample_archs(toy_space, n=5, seed=3, stream=VALIDATION_STREAM, settings=settings)
    with pytest.raises(InputError, match="too few distinct architectures"):  # the toy space has 12
        sample_archs(toy_space, n=13, seed=0, stream=VALIDATION_STREAM, settings=settings)


@pytest.fixture(scope="module")
def toy_table(tmp_path_factory):
    """A real ort-cpu table of the toy space at 8 px, made by the profiler (``hwnas profile``'s code)."""
    from hwnas.profile.backend import BackendConfig
    from hwnas.profile.profiler import ProfileSettings, profile_table
    from hwnas.space.loader import load_space

    out = tmp_path_factory.mktemp("table") / "toy_ort.json"
    profile_table([load_space(TOY_SPACE)], config=BackendConfig(backend="ort-cpu", threads=1), out=out,
                  settings=ProfileSettings(repeats=10, warmup=2), progress=False)
    return out


@pytest.mark.slow
def test_validate_end_to_end_and_resume(toy_table, tmp_path):
    plot, meas = tmp_path / "scatter.png", tmp_path / "meas.json"
    args = ("latency", "validate", "--table", str(toy_table), "--space", str(TOY_SPACE), "--samples", "3",
            "--calibration-samples", "3", "--seed", "1", "--repeats", "5", "--warmup", "1",
            "--measurements", str(meas))
    data = cli_json(*args, "--plot", str(plot))
    assert data["n"] == 3 and data["calibration_samples"] == 3 and data["calibrated"] is True
    for k in ("within_5pct", "within_10pct", "rmse_pct", "mape"):
        assert k in data and k in data["uncalibrated"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the reported numbers follow from the per-arch rows and the calibration
    rows, cal = data["archs"], Calibration.from_json(data["calibration"])
    for r in rows:
        assert r["predicted_ms"] == pytest.approx(cal.apply(lut_sum_ms=r["lut_sum_ms"], num_blocks=r["num_blocks"]))
    again = error_stats([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    assert again["rmse_pct"] == pytest.approx(data["rmse_pct"])
    # scored archs are not the calibration archs
    assert not {tuple(r["indices"]) for r in rows} & {tuple(i) for i in cal.fit["indices"]}
    stored = json.loads(meas.read_text())
    assert len(stored["entries"]) == 6
    # measured = the steady estimator's figure (3 x 5 runs -> 3 rounds of 5), with its spread
    assert data["measured"] == "steady" and data["estimator"]["name"] == "steady/q0-of-round-medians"
    assert (data["estimator"]["rounds"], data["estimator"]["runs_per_round"]) == (3, 5)
    assert stored["settings"]["estimator"] == data["estimator"] and stored["format"] == "hwnas.e2e_measurements/2"
    assert data["median_spread_pct"] >= 0 and data["max_spread_pct"] >= data["median_spread_pct"]
    for r in rows:
        e = next(e for e in stored["entries"].values() if e["steady_ms"] == r["measured_ms"])
        assert r["spread_pct"] == e["spread_pct"]
    # resumed: nothing is measured again, the same numbers come back
    resumed = cli_json(*args)
    assert [r["measured_ms"] for r in resumed["archs"]] == [r["measured_ms"] for r in rows]


@pytest.mark.slow
def test_calibrate_writes_next_to_table_and_predict_uses_it(toy_table, tmp_path):
    table = tmp_path / "t.json"
    table.write_text(toy_table.read_text())
    data = cli_json("latency", "calibrate", "--table", str(table), "--space", str(TOY_SPACE), "--samples", "3",
                    "--repeats", "5", "--warmup", "1")
    cal_file = calibration_path(table)
    assert data["out"] == str(cal_file) and data["n"] == 3
    assert data["estimator"]["name"] == "steady/q0-of-round-medians" and data["median_spread_pct"] >= 0
    cal = Calibration.load(cal_file, table=LatencyTable.load(table))
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps({"space": "toy", "resolution": 8, "choices": {"l1": "k5", "l2": "k3", "l3": "skip"}}))
    pred = cli_json("latency", "predict", "--table", str(table), "--arch", str(arch), "--space", str(TOY_SPACE))
    assert pred["calibrated"] is True
    assert pred["latency_ms"] == pytest.approx(cal.apply(lut_sum_ms=pred["lut_sum_ms"], num_blocks=4))
    # validate with --calibration-samples 0 scores the saved calibration on other archs
    v = cli_json("latency", "validate", "--table", str(table), "--space", str(TOY_SPACE), "--samples", "2",
                 "--calibration-samples", "0", "--repeats", "5", "--warmup", "1")
    assert v["calibrated"] and v["calibration"]["coef"] == list(cal.coef)
    assert not {tuple(r["indices"]) for r in v["archs"]} & {tuple(i) for i in cal.fit["indices"]}


def test_validate_bad_input(tmp_path, capsys):
    from hwnas.cli.main import main
    from tests.latency.test_latency_model import hand_table

    t = tmp_path / "t.json"
    hand_table().save(t)
    assert main(["latency", "validate", "--table", str(t), "--space", str(TOY_SPACE), "--samples", "0", "--json"]) == 2
    out = capsys.readouterr()
    assert "--samples" in out.err and out.out == ""
    assert main(["latency", "calibrate", "--table", str(tmp_path / "nope.json"), "--space", "toy",
                 "--samples", "3"]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert main(["latency", "calibrate", "--table", str(t), "--space", str(TOY_SPACE), "--samples", "2"]) == 2
    assert "--samples must be at least 3" in capsys.readouterr().err
    imported = hand_table()
    imported.device["backend"] = "imported"  # a published table: its device cannot be measured from here
    imported.save(t)
    assert main(["latency", "validate", "--table", str(t), "--space", str(TOY_SPACE), "--samples", "2"]) == 2
    assert "imported" in capsys.readouterr().err
    # a measurements file of the older estimator (one median of all runs) is refused, naming it
    hand_table().save(t)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "hwnas.e2e_measurements/1", "settings": {}, "entries": {}}))
    assert main(["latency", "validate", "--table", str(t), "--space", str(TOY_SPACE), "--samples", "2",
                 "--measurements", str(old)]) == 2
    err = capsys.readouterr().err
    assert "measurements file" in err and "before the steady estimator" in err
    # the side-by-side chunk size is checked before anything is measured
    assert main(["latency", "validate", "--table", str(t), "--space", str(TOY_SPACE), "--samples", "2",
                 "--chunk", "0"]) == 2
    assert "--chunk must be a positive integer, got 0." in capsys.readouterr().err


def test_table_measure_times_a_whole_chunk_side_by_side(monkeypatch):
    import hwnas.profile.whole_model as wm

    seen = {}
    monkeypatch.setattr(wm, "check_measurable", lambda table, *, commands: None)
    monkeypatch.setattr(wm, "measure_archs", lambda space, archs, **kw: seen.update(kw) or [1.0] * len(archs))
    store = type("S", (), {"steady": None})()
    m = wm.table_measure(None, table=None, store=store, repeats=5, warmup=1, seed=0)
    assert m.chunk == wm.DEFAULT_CHUNK == 50
    m = wm.table_measure(None, table=None, store=store, repeats=5, warmup=1, seed=0, chunk=130)
    assert m([{}] * 3, "x") == [1.0] * 3 and seen["chunk"] == 130
