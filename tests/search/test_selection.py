"""Measured final selection (``hwnas.search.selection``) with a stand-in measure of known latencies.

Every number below is checked by hand: the stand-in gives each architecture a constant round median
(ms), so the steady figure is that constant and the ratio to the reference is the quotient.
"""

from __future__ import annotations

import pytest

from hwnas.profile.steady import SteadySettings, side_by_side
from hwnas.search.runner import parse_latency_rel
from hwnas.search.selection import (REFERENCE, Budget, NoCandidateFits, SelectionConfig, prefer_best,
                                    select_measured, selection_fields, tie_margin)
from hwnas.errors import InputError

SETTINGS = SteadySettings(rounds=3, runs_per_round=1, warmup=0)
# indices → (accuracy, predicted ms)
CANDS = {(0,): (0.90, 0.70), (1,): (0.85, 0.75), (2,): (0.80, 0.60), (3,): (0.95, 0.99)}  # (3,) over budget
MEASURED = {(0,): 0.90, (1,): 0.78, (2,): 0.66, (3,): 1.0, "ref": 1.00}  # ms, the machine 10-20% slow


def _candidates():
    return [{"indices": list(k), "accuracy": a, "latency_ms": ms, "flops": 1.0, "params": 1.0}
            for k, (a, ms) in CANDS.items()]


def _measure(calls):
    def measure(archs, reference):
        calls.append(sorted(archs))
        rounds = {name: [MEASURED["ref" if name == REFERENCE else tuple(a["i"])]] * SETTINGS.rounds
                  for name, a in archs.items()}
        return side_by_side(rounds, settings=SETTINGS, reference=reference)
    return measure


def _select(budget, *, verify=8, chunk=8, done=(), on_chunk=None, calls=None, best=(0,), margin=0.0):
    acc, ms = CANDS[best]
    return select_measured(_candidates(), best={"indices": list(best), "accuracy": acc, "latency_ms": ms,
                                                "flops": 1.0, "params": 1.0},
                           feasible=lambda c: c["latency_ms"] <= budget.latency_ms, budget=budget,
                           decode=lambda idx: {"i": list(idx)}, reference_arch={"i": "ref"},
                           measure=_measure([] if calls is None else calls),
                           config=SelectionConfig(verify=verify, chunk=chunk, steady=SETTINGS), done=done,
                           on_chunk=on_chunk, accuracy_margin=margin)


ABS = Budget(latency_ms=0.8, reference="mobilenet_v2", reference_predicted_ms=0.9)


def test_best_measures_over_budget_so_the_second_best_wins():
    sel = _select(ABS)
    # (3,) is infeasible by prediction; (0,) is the most accurate but measures 0.90 > 0.8 ms
    assert [r["indices"] for r in sel.rows] == [[0], [1], [2]]
    assert [r["within_budget"] for r in sel.rows] == [False, True, True]
    assert sel.winner["indices"] == [1] and sel.winner["measured_latency_ms"] == pytest.approx(0.78)
    assert sel.winner["ratio_to_reference"] == pytest.approx(0.78)
    assert sel.reference["measured_ms"] == pytest.approx(1.0)
    # drift: median of 0.90/0.70, 0.78/0.75, 0.66/0.60 = median(1.2857, 1.04, 1.10) = 1.10
    assert sel.drift == pytest.approx(1.10)
    assert sel.table_drift == pytest.approx(1.0 / 0.9)
    # constant rounds: spread 0 %, so a 10 % drift refreshes the reported predictions
    assert sel.calibration_refresh["scale"] == pytest.approx(1.10)
    assert sel.rows[1]["predicted_refreshed_ms"] == pytest.approx(0.75 * 1.10)
    f = selection_fields(sel, budget=ABS, off=None)
    assert f["latency_source"] == "measured" and f["constraints_judged_on"] == "measured"
    assert f["measured_latency_ms"] == pytest.approx(0.78) and len(f["verified"]) == 3


def test_relative_budget_is_judged_on_the_measured_ratio():
    # factor 0.8 of a reference predicted at 1.0 ms: T = 0.8 ms; ratios 0.90, 0.78, 0.66
    rel = Budget(latency_ms=0.8, reference="mobilenet_v2", reference_predicted_ms=1.0, factor=0.8)
    sel = _select(rel, verify=2)
    assert [r["indices"] for r in sel.rows] == [[0], [1]]  # the 2 most accurate feasible
    assert sel.winner["indices"] == [1] and sel.winner["judged_on"] == "measured ratio"
    f = selection_fields(sel, budget=rel, off=None)
    assert f["measured_ratio"] == pytest.approx(0.78) and f["budget_factor"] == 0.8


def test_no_candidate_fits_names_the_closest():
    tight = Budget(latency_ms=0.65, reference="mobilenet_v2", reference_predicted_ms=0.9)
    with pytest.raises(NoCandidateFits) as e:
        _select(tight)  # only (2,) is feasible by prediction (0.60 ms); it measures 0.66 ms
    assert "closest" in str(e.value) and "0.6600 ms" in str(e.value) and "0.65 ms" in str(e.value)
    assert e.value.selection.winner is None and e.value.selection.closest["indices"] == [2]
    assert isinstance(e.value, RuntimeError) and not isinstance(e.value, InputError)


def test_chunks_resume_without_remeasuring():
    saved, calls = [], []
    _select(ABS, chunk=2, on_chunk=saved.append, calls=calls)
    assert len(calls) == 2 and all(REFERENCE in c for c in calls)  # every chunk holds the reference
    again = []
    sel = _select(ABS, chunk=2, done=saved[0], calls=again)  # killed after the first chunk
    assert len(again) == 1 and sel.winner["indices"] == [1]


def test_predicted_only_fields():
    f = selection_fields(None, budget=ABS, off="--verify 0")
    assert f["latency_source"] == "predicted" and f["measured_latency_ms"] is None and f["verified"] == []
    assert f["predicted_only_reason"] == "--verify 0"


def test_latency_rel_parsing():
    assert parse_latency_rel("mobilenet_v2:0.8") == ("mobilenet_v2", 0.8)
    assert parse_latency_rel("C:/a/b.json:1.5") == ("C:/a/b.json", 1.5)
    for bad in ("mobilenet_v2", "mobilenet_v2:0", "mobilenet_v2:2.5", ":0.5", "x:abc"):
        with pytest.raises(InputError, match="--latency-rel"):
            parse_latency_rel(bad)


def test_none_feasible_by_prediction_measures_the_strategys_best():
    # budget 0.5 ms: nothing fits by prediction; the best (0,) predicted 0.70 ms measures 0.90 ms
    with pytest.raises(NoCandidateFits) as e:
        _select(Budget(latency_ms=0.5, reference="mobilenet_v2", reference_predicted_ms=0.9))
    assert [r["indices"] for r in e.value.selection.rows] == [[0]]


def test_tie_margin_by_hand():
    assert tie_margin(0.9, n=600) == pytest.approx(1.96 * (2 * 0.9 * 0.1 / 600) ** 0.5)  # 0.0339
    assert tie_margin(0.13, n=600) == pytest.approx(0.03806, abs=1e-5)
    assert tie_margin(None, n=600) == 0.0 and tie_margin(0.5, n=None) == 0.0 and tie_margin(1.0, n=10) == 0.0


def test_prefer_best_keeps_the_strategys_answer_ahead_of_tied_candidates():
    rows = [{"indices": [0], "accuracy": 0.90, "latency_ms": 0.7}, {"indices": [1], "accuracy": 0.85, "latency_ms": 0.75},
            {"indices": [2], "accuracy": 0.80, "latency_ms": 0.6}]
    # best (2,) at 0.80: (0,) is 0.10 more accurate (beyond a 0.06 margin), (1,) 0.05 (within it)
    assert [r["indices"] for r in prefer_best(rows, best=[2], margin=0.06)] == [[0], [2], [1]]
    assert [r["indices"] for r in prefer_best(rows, best=[2], margin=0.11)] == [[2], [0], [1]]
    assert [r["indices"] for r in prefer_best(rows, best=[2], margin=0.0)] == [[0], [1], [2]]
    assert [r["indices"] for r in prefer_best(rows, best=None, margin=0.5)] == [[0], [1], [2]]


def test_a_tied_candidate_does_not_displace_the_strategys_best_but_a_better_one_does():
    # the strategy's best is (1,) at 0.85 (measures 0.78 <= 0.8 ms); (0,) at 0.90 measures over budget anyway
    assert _select(ABS, best=(1,), margin=0.0).winner["indices"] == [1]
    relaxed = Budget(latency_ms=0.95, reference="mobilenet_v2", reference_predicted_ms=0.9)  # everything fits
    assert _select(relaxed, best=(1,), margin=0.0).winner["indices"] == [0]  # plain accuracy order
    assert _select(relaxed, best=(1,), margin=0.06).winner["indices"] == [1]  # +0.05 is within the noise
    assert _select(relaxed, best=(1,), margin=0.04).winner["indices"] == [0]  # +0.05 is beyond it
