"""Calibration: least-squares fit recovers a known law, JSON round trip, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.errors import InputError
from hwnas.latency.calibration import Calibration, calibration_path, fit_calibration, table_fingerprint
from hwnas.latency.table import LatencyTable


def _table(ms=1.0):
    return LatencyTable(device={"backend": "ort-cpu", "resolution": 8},
                        entries={"Conv-input:8x8x3-output:8x8x8": {"median_ms": ms}}, created="2026-01-01T00:00:00Z")


def test_fit_recovers_an_exact_linear_law():
    lut = [1.0, 2.0, 3.0, 4.0, 2.5]
    nb = [3, 4, 3, 5, 6]
    measured = [0.8 * l - 0.05 * n + 0.3 for l, n in zip(lut, nb)]  # 0.65, 1.4, 2.55, 3.25, 2.0
    cal = fit_calibration(lut_sum_ms=lut, num_blocks=nb, measured_ms=measured, table=_table())
    assert cal.coef == pytest.approx((0.8, -0.05), abs=1e-9)
    assert cal.intercept_ms == pytest.approx(0.3, abs=1e-9)
    assert cal.fit["rmse_pct"] == pytest.approx(0.0, abs=1e-6) and cal.fit["n"] == 5
    assert cal.apply(lut_sum_ms=10.0, num_blocks=20) == pytest.approx(8.0 - 1.0 + 0.3)
    assert cal.per_block() == pytest.approx((0.8, -0.05))


def test_fit_minimizes_relative_error():
    # one noisy point at a small latency: relative weighting keeps the small archs accurate
    lut, nb = [1.0, 1.0, 10.0, 10.0], [1, 1, 1, 1]
    measured = [1.0, 1.0, 10.0, 12.0]
    cal = fit_calibration(lut_sum_ms=lut, num_blocks=nb, measured_ms=measured, table=_table(),
                          features=("lut_sum_ms",))
    pred = [cal.apply(lut_sum_ms=x, num_blocks=1) for x in lut]
    # by hand: two distinct x, so p(1) = 1 exactly and p(10) minimizes ((p-10)/10)² + ((p-12)/12)²:
    # p = (10/10² + 12/12²) / (1/10² + 1/12²) = 10.8197 (unweighted least squares would give 11)
    assert pred[0] == pytest.approx(1.0, abs=1e-9)
    assert pred[2] == pytest.approx((10 / 100 + 12 / 144) / (1 / 100 + 1 / 144), abs=1e-9)


def test_json_round_trip_is_plain_data(tmp_path):
    table = _table()
    cal = fit_calibration(lut_sum_ms=[1, 2, 3, 5], num_blocks=[2, 3, 2, 4], measured_ms=[0.9, 1.7, 2.9, 4.1],
                          table=table, info={"space": "toy", "indices": [[0, 1], [1, 0]]})
    path = cal.save(calibration_path(tmp_path / "t.json"))
    assert path.name == "t.calibration.json"
    raw = json.loads(path.read_text())
    assert raw["format"] == "hwnas.latency_calibration/1" and raw["table"] == table_fingerprint(table)
    again = Calibration.load(path, table=table)
    assert again == cal
    assert again.apply(lut_sum_ms=2.0, num_blocks=3) == cal.apply(lut_sum_ms=2.0, num_blocks=3)


def test_calibration_for_another_table_is_refused(tmp_path):
    cal = fit_calibration(lut_sum_ms=[1, 2, 3], num_blocks=[1, 2, 4], measured_ms=[1, 2, 3], table=_table())
    path = cal.save(tmp_path / "c.json")
    with pytest.raises(InputError, match="another latency table"):
        Calibration.load(path, table=_table(ms=2.0))
    assert table_fingerprint(_table()) == table_fingerprint(_table())  # content, not object identity


@pytest.mark.parametrize("field,value,match", [
    ("format", "pickle", "format"),
    ("features", ["flops"], "features"),
    ("coef", [1.0], "coef"),
    ("intercept_ms", "x", "intercept_ms"),
    ("table", "abc", "table"),
])
def test_malformed_calibration_names_the_field(tmp_path, field, value, match):
    cal = fit_calibration(lut_sum_ms=[1, 2, 3], num_blocks=[1, 2, 4], measured_ms=[1, 2, 3], table=_table())
    raw = {**cal.to_json(), field: value}
    with pytest.raises(InputError, match=match):
        Calibration.from_json(raw)


def test_too_few_or_bad_measurements():
    with pytest.raises(InputError, match="at least 3"):
        fit_calibration(lut_sum_ms=[1, 2], num_blocks=[1, 2], measured_ms=[1, 2], table=_table())
    with pytest.raises(InputError, match="positive"):
        fit_calibration(lut_sum_ms=[1, 2, 3], num_blocks=[1, 2, 3], measured_ms=[1, 0, 2], table=_table())
    assert np.isfinite(fit_calibration(lut_sum_ms=[1, 2, 3], num_blocks=[2, 2, 2], measured_ms=[1, 2, 3],
                                       table=_table()).intercept_ms)  # collinear columns still fit
