"""The profiling protocol with a scripted backend: interleaved shuffled rounds after warm-up, CV-driven
re-measurement, coverage of every block, chunked flushes, resume and refusals (no timing noise)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import InputError
from hwnas.latency.table import LatencyTable
from hwnas.profile.backend import Backend, BackendConfig, Runner, register_backend
from hwnas.profile.profiler import ProfileSettings, measure_interleaved, profile_table
from hwnas.space.blocks import op_key
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE

CALLS: list[str] = []  # run_once calls of the scripted backend, in order


class ScriptedRunner(Runner):
    """Returns ``base`` ms; the first ``noisy`` timed-pass values alternate ±50% (a wide spread)."""

    def __init__(self, name: str, base: float, *, noisy: int = 0, fail_after: int | None = None) -> None:
        self.name, self.base, self.noisy, self.n = name, base, noisy, 0
        self.fail_after = fail_after

    def run_once(self) -> float:
        CALLS.append(self.name)
        self.n += 1
        if self.fail_after is not None and self.n > self.fail_after:
            raise RuntimeError("device lost")
        if self.n <= self.noisy:
            return self.base * (1.5 if self.n % 2 else 0.5)
        return self.base


@register_backend("test-scripted")
class ScriptedBackend(Backend):
    """Latency = number of input channels × 0.1 ms; env-free, deterministic."""

    fail_on: set[str] = set()

    def processor(self) -> str:
        return "scripted"

    def prepare(self, module, input_shape, *, workdir, name):
        n, c, h, w = input_shape
        fail = 0 if name in self.fail_on else None
        return ScriptedRunner(name, 0.1 * c, fail_after=fail)


def test_interleaved_rounds_warmup_and_remeasure():
    CALLS.clear()
    runners = {"a": ScriptedRunner("a", 1.0, noisy=8), "b": ScriptedRunner("b", 2.0), "c": ScriptedRunner("c", 3.0)}
    remeasured: list[str] = []
    s = ProfileSettings(repeats=4, warmup=2, max_cv=0.05, remeasure=2, min_sample_ms=0)
    samples = measure_interleaved(runners, ["a", "b", "c"], settings=s, rng=np.random.default_rng(0),
                                  remeasured=remeasured)
    # warm-up: 2 rounds of 3, then 4 timed rounds of 3: each round holds every key exactly once
    rounds = [CALLS[i:i + 3] for i in range(0, 18, 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order is shuffled between rounds
    # "a": runs 1-2 warm-up, 3-6 timed (1.5, 0.5, 1.5, 0.5: CV 0.58) -> re-measured alone:
    # runs 7-8 still noisy, 9-10 clean: (1.5, 0.5, 1.0, 1.0), CV 0.41 < 0.58 kept; third pass clean
    assert CALLS[18:] == ["a"] * 8
    assert remeasured == ["a"]
    assert samples["a"] == [1.0] * 4 and samples["b"] == [2.0] * 4 and samples["c"] == [3.0] * 4


def test_remeasure_keeps_the_tighter_pass_and_stops_at_the_limit():
    CALLS.clear()
    runners = {"a": ScriptedRunner("a", 1.0, noisy=100)}  # never settles
    s = ProfileSettings(repeats=4, warmup=0, max_cv=0.05, remeasure=1, min_sample_ms=0)
    samples = measure_interleaved(runners, ["a"], settings=s, rng=np.random.default_rng(0))
    assert len(CALLS) == 8  # one timed pass + one re-measurement, no more
    assert sorted(samples["a"]) == [0.5, 0.5, 1.5, 1.5]


def test_samples_average_back_to_back_runs_of_fast_blocks():
    CALLS.clear()
    runners = {"fast": ScriptedRunner("fast", 0.3), "slow": ScriptedRunner("slow", 2.5)}
    s = ProfileSettings(repeats=3, warmup=1, min_sample_ms=1.0)
    samples = measure_interleaved(runners, ["fast", "slow"], settings=s, rng=np.random.default_rng(0))
    # warm-up: one run each; then a 0.3 ms block needs ceil(1 / 0.3) = 4 runs per sample, a 2.5 ms one 1
    assert CALLS.count("fast") == 1 + 3 * 4 and CALLS.count("slow") == 1 + 3
    assert samples["fast"] == pytest.approx([0.3] * 3) and samples["slow"] == [2.5] * 3
    # within a round, a sample's runs are back to back
    timed = CALLS[2:]
    i = timed.index("fast")
    assert timed[i:i + 4] == ["fast"] * 4


def test_profile_covers_every_block_and_records_the_scope(tmp_path):
    sp = load_space(TOY_SPACE)
    out = tmp_path / "t.json"
    res = profile_table([sp], config=BackendConfig(backend="test-scripted", threads=1), out=out, resolution=16,
                        width_mult=2.0, num_classes=7, settings=ProfileSettings(repeats=3, warmup=1, chunk=2),
                        progress=False)
    table = LatencyTable.load(out)
    want = {op_key(b) for b in sp.all_blocks(resolution=16, width_mult=2.0, num_classes=7)}
    assert set(table.entries) == want and len(want) == 4
    # width x2 of 8 channels = 16: the searchable blocks' input has 16 channels -> 1.6 ms each
    k3 = "expanded_conv-input:16x16x16-output:16x16x16-expand:32-kernel:3-stride:1-idskip:1-se:0-hs:0"
    assert table.entries[k3] == {"median_ms": pytest.approx(1.6), "mean_ms": pytest.approx(1.6), "std_ms": pytest.approx(0.0, abs=1e-12),
                                 "p10_ms": pytest.approx(1.6), "p90_ms": pytest.approx(1.6), "count": 3,
                                 "steady_ms": pytest.approx(1.6), "spread_pct": pytest.approx(0.0, abs=1e-9)}
    assert table.entries["Conv-input:16x16x3-output:16x16x16"]["median_ms"] == pytest.approx(0.3)
    d = table.device
    assert (d["backend"], d["resolution"], d["width_mult"], d["num_classes"], d["spaces"]) == \
        ("test-scripted", 16, 2.0, 7, ["toy"])
    assert d["repeats"] == 3 and d["warmup"] == 1 and d["processor"] == "scripted" and "versions" in d
    # the entries' steady figure: 3 samples = 1 round of 3 (the largest divisor of 3 up to 5), q0
    assert d["stat"] == "steady" and d["estimator"] == {"name": "steady/q0-of-round-medians", "quantile": 0.0,
                                                        "rounds": 1, "runs_per_round": 3,
                                                        "samples": "interleaved single runs"}
    # every arch of the space is predictable from the table alone
    for preset in sp.presets:
        table.lookup_sum(sp.resolve(sp.preset(preset, resolution=16, width_mult=2.0, num_classes=7)))
    assert res.summary()["entries"] == 4 and res.summary()["cv_median"] == pytest.approx(0.0, abs=1e-9)
    assert not (tmp_path / "t.json.work").exists()  # the default work folder is removed when complete


def test_existing_out_is_refused_without_resume(tmp_path):
    out = tmp_path / "t.json"
    out.write_text("{}")
    with pytest.raises(InputError, match="already exists; pass --resume"):
        profile_table([load_space(TOY_SPACE)], config=BackendConfig(backend="test-scripted"), out=out, progress=False)
    assert out.read_text() == "{}"


def test_interrupted_run_flushes_finished_chunks_and_resume_measures_only_the_rest(tmp_path):
    sp = load_space(TOY_SPACE)
    out = tmp_path / "t.json"
    settings = ProfileSettings(repeats=2, warmup=0, chunk=1, seed=0, min_sample_ms=0)  # seed 0: Logits last
    keys = {op_key(b) for b in sp.all_blocks()}
    from hwnas.profile.profiler import file_id

    # the device fails on the Logits block: chunks before it are on disk, the rest is not
    ScriptedBackend.fail_on = {file_id("Logits-input:8x8x8-output:4")}
    try:
        with pytest.raises(RuntimeError, match="device lost"):
            profile_table([sp], config=BackendConfig(backend="test-scripted"), out=out, settings=settings,
                          progress=False)
    finally:
        ScriptedBackend.fail_on = set()
    partial = json.loads(out.read_text())
    done = set(partial["entries"])
    assert len(done) == 3 and "Logits-input:8x8x8-output:4" not in done
    CALLS.clear()
    res = profile_table([sp], config=BackendConfig(backend="test-scripted"), out=out, settings=settings,
                        resume=True, progress=False)
    assert res.skipped == len(done) and sorted(res.measured) == sorted(keys - done)
    assert len(CALLS) == 2 * len(keys - done)  # finished entries were not measured again
    assert set(LatencyTable.load(out).entries) == keys


def test_resume_with_other_settings_is_refused(tmp_path):
    sp = load_space(TOY_SPACE)
    out = tmp_path / "t.json"
    s = ProfileSettings(repeats=2, warmup=0)
    profile_table([sp], config=BackendConfig(backend="test-scripted"), out=out, settings=s, progress=False)
    before = out.read_text()
    with pytest.raises(InputError, match="device.threads = 1, but this run has 2"):
        profile_table([sp], config=BackendConfig(backend="test-scripted", threads=2), out=out, settings=s,
                      resume=True, progress=False)
    with pytest.raises(InputError, match="device.resolution = 8, but this run has 16"):
        profile_table([sp], config=BackendConfig(backend="test-scripted"), out=out, settings=s, resolution=16,
                      resume=True, progress=False)
    assert out.read_text() == before


@pytest.mark.parametrize("field, value, message", [
    ("repeats", 0, "--repeats must be an integer >= 1"),
    ("chunk", 0, "--chunk must be an integer >= 1"),
    ("max_cv", 0.0, "--max-cv must be a positive number"),
])
def test_bad_settings_are_input_errors(tmp_path, field, value, message):
    with pytest.raises(InputError, match=message):
        profile_table([load_space(TOY_SPACE)], config=BackendConfig(backend="test-scripted"),
                      out=tmp_path / "t.json", settings=ProfileSettings(**{field: value}), progress=False)
    assert not Path(tmp_path / "t.json").exists()


def test_entries_take_the_steady_figure_of_their_rounds(tmp_path):
    """A block slow in half its rounds: steady_ms is the fast state, median_ms stays the plain median."""
    from hwnas.latency.model import LatencyModel
    from hwnas.profile.steady import group_rounds, steady_entry

    samples = [1.0, 1.0, 1.4, 1.4, 1.0, 1.0, 1.4, 1.4]  # rounds of 2: medians 1.0, 1.4, 1.0, 1.4
    e = steady_entry(group_rounds(samples, runs_per_round=2), quantile=0.25)
    assert e["steady_ms"] == pytest.approx(1.0) and e["median_ms"] == pytest.approx(1.2)
    # the latency model sums steady_ms where an entry has it, median_ms where not (older, imported tables)
    table = LatencyTable(device={"backend": "test-scripted"}, entries={
        "a": {"median_ms": 1.2, "steady_ms": 1.0}, "b": {"median_ms": 2.0}})
    assert table.ms("a") == 1.0 and table.ms("b") == 2.0
    assert LatencyModel.from_table(table).keys_ms(["a", "b"])[0] == [1.0, 2.0]
    with pytest.raises(InputError, match=r"entries\['a'\].steady_ms must be a non-negative number"):
        LatencyTable.from_json({"format": "hwnas.latency_table/1", "device": {"backend": "x"},
                                "entries": {"a": {"median_ms": 1.0, "steady_ms": -1}}})
    with pytest.raises(InputError, match="--runs-per-round must be an integer in"):
        ProfileSettings(repeats=3, runs_per_round=4).validate()


def test_profile_round_flags(tmp_path, capsys):
    from hwnas.cli.main import main

    out = str(tmp_path / "t.json")
    assert main(["profile", "--space", str(TOY_SPACE), "--rounds", "0", "--out", out]) == 2
    assert "--rounds must be an integer >= 1" in capsys.readouterr().err
    assert main(["profile", "--space", str(TOY_SPACE), "--rounds", "2", "--repeats", "4", "--out", out]) == 2
    assert "not both" in capsys.readouterr().err
    # --rounds 2 --runs-per-round 3: 6 interleaved samples per block, 2 round medians
    assert main(["profile", "--space", str(TOY_SPACE), "--backend", "test-scripted", "--rounds", "2",
                 "--runs-per-round", "3", "--warmup", "0", "--out", out, "--json"]) == 0
    d = LatencyTable.load(out).device
    assert d["repeats"] == 6 and (d["estimator"]["rounds"], d["estimator"]["runs_per_round"]) == (2, 3)
    assert json.loads(capsys.readouterr().out)["estimator"] == d["estimator"]
