"""Predicted against measured whole-model latency, on this machine: a table profiled in the test
(ort-cpu, 1 thread) predicts two toy architectures that are then built, exported and timed whole,
side by side (the steady estimator).

The toy space at 64 px keeps every block's activations in cache and its blocks well above ONNX
Runtime's per-run overhead, the regime where a sum of isolated block timings tracks the whole model
(benchmarks/RESULTS.md: 91% of 32-px MobileNetV2 models within +-10% once calibrated; the
uncalibrated sum overestimates by the per-block overheads). The bounds are generous, for a busy
machine, but a table or predictor that is off by a unit, a block or a stat fails them.
"""

from __future__ import annotations

from hwnas.latency.model import LatencyModel
from hwnas.profile import BackendConfig, ProfileSettings, SteadySettings, measure_archs_side_by_side, profile_table
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE

RES, CLASSES = 64, 10
#: |predicted ratio / measured ratio - 1| allowed (big / small, uncalibrated table sums).
TOLERANCE = 0.35


def test_table_predictions_track_whole_model_latency(tmp_path):
    sp = load_space(TOY_SPACE)
    cfg = BackendConfig(backend="ort-cpu", threads=1)
    table = tmp_path / "toy64.json"
    profile_table([sp], config=cfg, out=table, resolution=RES, num_classes=CLASSES,
                  settings=ProfileSettings(repeats=30, warmup=5, remeasure=1), progress=False)
    model = LatencyModel.load(table)
    # small: stem, k3, skip, skip, head; big: stem, k5, k3, k5, head (about 3x the FLOPs)
    archs = {n: sp.preset(n, resolution=RES, num_classes=CLASSES) for n in ("small", "big")}
    predicted = {n: model.predict(a, space=sp).latency_ms for n, a in archs.items()}
    measured_all = measure_archs_side_by_side(sp, archs, config=cfg, reference="small",
                                              settings=SteadySettings(rounds=12, runs_per_round=5, warmup=5))
    measured = {n: measured_all.latency[n].ms for n in archs}
    # clearly different models, in the same order measured and predicted
    assert measured["big"] > 1.8 * measured["small"], measured
    assert predicted["big"] > 1.8 * predicted["small"], predicted
    # no absolute bound per arch: the table is profiled minutes before the models are timed and, under
    # `pytest -n 2`, beside another worker, so absolute figures move by 2.6x between the two (seen in a
    # clean-clone CI run: predicted 0.334 ms, measured 0.127 ms); ratios of models timed in the same
    # rounds do not move like that
    # and the predicted ratio big / small within +-35% of the ratio measured in the same rounds (the
    # common overhead bias cancels: 2.44 predicted against 2.48 measured on the dev VM)
    ratio = predicted["big"] / predicted["small"]
    assert abs(ratio / measured_all.ratio["big"] - 1) <= TOLERANCE, (ratio, measured_all.ratio)
