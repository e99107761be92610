"""The steady-latency estimator on scripted timings: no real timing, every number checkable by hand."""

from __future__ import annotations

import contextlib
import json

import pytest

from hwnas.errors import InputError
from hwnas.profile.backend import Backend, BackendConfig, Runner
from hwnas.profile.steady import (ESTIMATOR, SteadySettings, estimator_name, group_rounds, measure_side_by_side,
                                  side_by_side, spread_pct, steady_entry, steady_figure)
from hwnas.profile.whole_model import STORE_FORMAT, MeasurementStore, whole_model_settings


class Machine:
    """A scripted machine: ``factor(call)`` is its slowdown at the n-th ``run_once`` call; it logs who ran."""

    def __init__(self, factor=lambda call: 1.0):
        self.factor, self.calls, self.log = factor, 0, []


class Scripted(Runner):
    """A stand-in runner: ``base_ms`` times the machine's current slowdown."""

    def __init__(self, machine: Machine, name: str, base_ms: float):
        self.machine, self.name, self.base_ms = machine, name, base_ms

    def run_once(self) -> float:
        m = self.machine
        ms = self.base_ms * m.factor(m.calls)
        m.calls += 1
        m.log.append(self.name)
        return ms


class StandIn(Backend):
    def prepare(self, module, input_shape, *, workdir, name):  # never called: runners are given
        raise NotImplementedError

    def timing_context(self):
        return contextlib.nullcontext()


BACKEND = StandIn(BackendConfig())


def test_steady_figure_of_two_states_is_the_fast_one():
    rounds = [1.0] * 12 + [1.4] * 8  # a fast state, and a 1.4x slow one for 40% of the rounds
    assert steady_figure(rounds, quantile=0.25) == 1.0
    assert steady_figure([1.0, 1.0, 1.4, 1.4], quantile=0.25) == 1.0
    # q10 = 1.0, q50 = 1.0, q90 = 1.4: the spread is 40 %; one value has none
    assert spread_pct(rounds) == pytest.approx(40.0) and spread_pct([3.0]) == 0.0
    r = side_by_side({"a": rounds}, settings=SteadySettings())
    assert r.latency["a"].ms == 1.0 and r.latency["a"].median_ms == 1.0 and r.unstable  # 40 % > 15 %
    assert r.latency["a"].estimator == ESTIMATOR == "steady/q0-of-round-medians" == SteadySettings().name
    assert estimator_name(0.1) == "steady/q10-of-round-medians" and estimator_name(0.125) == "steady/q12.5-of-round-medians"


def test_one_runner_through_the_timing_loop_gives_the_fast_state():
    # 20 rounds of 3 runs, no warm-up: the machine turns 1.4x slow after 12 rounds (36 calls)
    machine = Machine(lambda call: 1.0 if call < 36 else 1.4)
    s = SteadySettings(rounds=20, runs_per_round=3, warmup=0, retries=0)
    r = measure_side_by_side({"m": Scripted(machine, "m", 0.5)}, backend=BACKEND, settings=s)
    assert machine.calls == 60  # alone, a candidate gets no extra warm run per round
    assert r.latency["m"].ms == pytest.approx(0.5) and r.latency["m"].rounds == 20
    e = r.entry("m")
    assert e["steady_ms"] == pytest.approx(0.5) and e["count"] == 60 and e["median_ms"] == pytest.approx(0.5)
    assert e["rounds"] == 20 and e["runs_per_round"] == 3 and e["spread_pct"] == pytest.approx(40.0)
    assert e["estimator"] == ESTIMATOR and e["unstable"] is True and e["attempts"] == 1


def test_rounds_interleave_in_fresh_orders_with_a_warm_run_each():
    machine = Machine()
    runners = {k: Scripted(machine, k, 1.0) for k in "abc"}
    s = SteadySettings(rounds=6, runs_per_round=2, warmup=1, retries=0)
    measure_side_by_side(runners, backend=BACKEND, settings=s, seed=0)
    log = machine.log
    assert log[:3] == ["a", "b", "c"]  # warm-up: every candidate once, before any round
    body = log[3:]
    assert len(body) == 6 * 3 * (1 + 2)  # rounds x candidates x (warm run + timed runs)
    turns = [body[i:i + 3] for i in range(0, len(body), 3)]
    assert all(len(set(t)) == 1 for t in turns)  # a candidate's warm run and timed runs are back to back
    orders = [tuple(t[0] for t in turns[i:i + 3]) for i in range(0, len(turns), 3)]
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)  # each round runs every candidate once
    assert len(set(orders)) > 1  # in freshly shuffled orders


def test_ratios_per_round_stay_exact_under_a_state_switch():
    # the machine switches between a fast and a 1.45x slow state every 8 calls, i.e. every 2 rounds
    # (a round: 2 candidates x (1 warm run + 1 timed run) = 4 calls)
    machine = Machine(lambda call: 1.0 if (call // 8) % 2 == 0 else 1.45)
    runners = {"a": Scripted(machine, "a", 2.0), "b": Scripted(machine, "b", 1.4)}  # b = 0.7 a in each state
    s = SteadySettings(rounds=10, runs_per_round=1, warmup=0, retries=0)
    r = measure_side_by_side(runners, backend=BACKEND, settings=s, reference="a")
    assert r.ratio["b"] == pytest.approx(0.7) and r.ratio["a"] == 1.0
    assert r.ratio_spread_pct["b"] == pytest.approx(0.0, abs=1e-9)
    assert r.latency["a"].spread_pct > 40  # the absolute figures move by 45 %, the ratio does not


def test_unstable_attempt_is_remeasured_and_rounds_are_pooled():
    # first attempt (10 rounds of 2 runs = 20 calls) alternates 1.0 / 2.0 by round; then the machine is steady
    machine = Machine(lambda call: (1.0 if (call // 2) % 2 == 0 else 2.0) if call < 20 else 1.0)
    s = SteadySettings(rounds=10, runs_per_round=2, warmup=0, retries=2, max_spread_pct=15.0)
    r = measure_side_by_side({"m": Scripted(machine, "m", 1.0)}, backend=BACKEND, settings=s)
    assert r.attempts == 2 and r.remeasured and not r.unstable  # the second attempt was stable: no third
    assert machine.calls == 40 and r.latency["m"].rounds == 20  # figures over both attempts' rounds
    assert r.latency["m"].ms == 1.0 and r.entry("m")["count"] == 40
    # never stable: every retry is made and the result says so
    machine = Machine(lambda call: 1.0 if (call // 2) % 2 == 0 else 2.0)
    r = measure_side_by_side({"m": Scripted(machine, "m", 1.0)}, backend=BACKEND, settings=s)
    assert r.attempts == 3 and r.unstable and r.latency["m"].rounds == 30


def test_settings_from_counts_keep_the_number_of_runs():
    s = SteadySettings.from_counts(repeats=30, warmup=2)
    assert (s.rounds, s.runs_per_round, s.warmup) == (6, 5, 2)
    assert (SteadySettings.from_counts(repeats=7).rounds, SteadySettings.from_counts(repeats=7).runs_per_round) == (7, 1)
    assert SteadySettings.from_counts(repeats=12).runs_per_round == 4
    s = SteadySettings.from_counts(repeats=30, rounds=40)  # explicit rounds win
    assert (s.rounds, s.runs_per_round) == (40, 5)
    s = SteadySettings.from_counts(repeats=30, runs_per_round=3)
    assert (s.rounds, s.runs_per_round) == (10, 3)
    assert SteadySettings.from_counts() == SteadySettings()
    assert whole_model_settings(repeats=30, warmup=5) == SteadySettings(rounds=18, runs_per_round=5, warmup=5)
    with pytest.raises(InputError, match="--rounds must be an integer >= 1"):
        SteadySettings.from_counts(rounds=0)
    assert SteadySettings(quantile=0.1).to_json()["name"] == "steady/q10-of-round-medians"


def test_group_rounds_and_steady_entry_by_hand():
    assert group_rounds([1, 2, 3, 4, 5, 6, 7], runs_per_round=3) == [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0, 7.0)]
    e = steady_entry([(1.0, 3.0), (2.0, 2.0), (5.0, 7.0), (2.0, 4.0)], quantile=0.25)  # round medians 2, 2, 6, 3
    assert e["steady_ms"] == pytest.approx(2.0) and e["count"] == 8 and e["median_ms"] == pytest.approx(2.5)
    assert e["spread_pct"] == pytest.approx(100 * (5.1 - 2.0) / 2.5)  # sorted 2, 2, 3, 6: q90 5.1, q10 2, q50 2.5
    assert (e["rounds"], e["runs_per_round"]) == (4, 2)


def test_a_store_of_another_estimator_or_format_is_refused(tmp_path):
    device = {"backend": "ort-cpu", "threads": 1}
    path = tmp_path / "m.json"
    store = MeasurementStore(path, device=device, repeats=30, warmup=5)
    store.put("x", {"median_ms": 1.0, "steady_ms": 0.9})
    assert json.loads(path.read_text())["settings"]["estimator"]["name"] == ESTIMATOR
    assert MeasurementStore(path, device=device, repeats=30, warmup=5).get("x")["steady_ms"] == 0.9  # resumes
    with pytest.raises(InputError, match="another estimator"):
        MeasurementStore(path, device=device, repeats=30, warmup=5, steady=SteadySettings(quantile=0.1))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "hwnas.e2e_measurements/1", "settings": {}, "entries": {}}))
    with pytest.raises(InputError, match="before the steady estimator"):
        MeasurementStore(old, device=device, repeats=30, warmup=5)
    assert STORE_FORMAT.endswith("/2")
