"""``hwnas search --strategy mnasnet`` end to end on digits: run directory, rewards recorded per sampled
model, FLOPs/params as hard constraints, kill-and-resume, proxy accuracy and measured latency."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import InputError
from hwnas.jsonio import read_json
from hwnas.latency.table import LatencyTable
from hwnas.search.controller import ControllerConfig
from hwnas.search.objective import mnasnet_reward, tunas_reward
from hwnas.search.strategies.mnasnet import MnasNet
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE, read_history, run_cli, synthetic_table

T, PARAMS_MAX = 0.22, 250_000  # ms (about the median sampled latency), params (about 60% of models fit)
COMMON = ["--space", "mnasnet", "--strategy", "mnasnet", "--latency-ms", str(T), "--params-max", str(PARAMS_MAX),
          "--data", "digits", "--data-limit", "128", "--epochs", "1", "--bn-batches", "1", "--mnas-steps", "3",
          "--mnas-archs-per-step", "3", "--seed", "3"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return synthetic_table("mnasnet", resolution=32, width_mult=0.25, num_classes=10,
                           path=tmp_path_factory.mktemp("t") / "synthetic.json")


@pytest.fixture(scope="module")
def toy_table(tmp_path_factory) -> Path:
    """Toy space (3 decisions, 8x8), SYNTHETIC entries: fast runs for resume and error paths."""
    return synthetic_table(str(TOY_SPACE), resolution=8, width_mult=1.0, num_classes=10,
                           path=tmp_path_factory.mktemp("t") / "toy.json")


@pytest.fixture(scope="module")
def ort_table(toy_table, tmp_path_factory) -> Path:
    """The toy table with a header naming the ort-cpu backend: measured mode times models for real."""
    t = LatencyTable.load(toy_table)
    t.device = {**t.device, "name": "test-ort-cpu", "backend": "ort-cpu", "threads": 1, "batch": 1,
                "dtype": "float32"}
    return t.save(tmp_path_factory.mktemp("t") / "toy-ort.json")


def _search(out: Path, *args: str, crash: str | None = None) -> subprocess.CompletedProcess:
    return run_cli("search", *args, "--out", str(out), "--json", crash=crash, timeout=600)



@pytest.mark.slow
def test_mnasnet_search_on_the_mnasnet_space_records_every_sample(table, tmp_path):
    full = _search(tmp_path / "full", *COMMON, "--table", str(table))
    assert full.returncode == 0, full.stderr
    summary = json.loads(full.stdout)
    run = tmp_path / "full"
    for f in ("config.json", "history.jsonl", "checkpoint.pt", "summary.json", "best_arch.json", "pareto.png",
              "controller.png"):
        assert (run / f).exists(), f
    history = read_history(run)
    assert [h["phase"] for h in history] == ["supernet", "mnasnet", "mnasnet", "mnasnet"]
    space = load_space("mnasnet")
    samples = [s for h in history[1:] for s in h["samples"]]
    assert len(samples) == 9
    for s in samples:
        space.validate_arch(space.decode(s["indices"]))
        if s["accuracy"] is None:  # over --params-max: not scored, reward 0
            assert s["reward"] == 0.0 and not s["feasible"]
        else:
            # the default: TuNAS's absolute reward aimed at 0.975 T, by hand
            assert s["reward"] == pytest.approx(s["accuracy"] - 0.1 * abs(s["latency_ms"] / (0.975 * T) - 1))
            assert s["reward"] == pytest.approx(tunas_reward(s["accuracy"], s["latency_ms"], 0.975 * T))
            assert s["feasible"] == (s["latency_ms"] <= T)
    assert any(s["accuracy"] is None for s in samples) and any(s["accuracy"] is not None for s in samples)
    for h in history[1:]:
        assert h["mean_reward"] == pytest.approx(np.mean([s["reward"] for s in h["samples"]]))

    # the winner: the highest-reward sampled (or greedy) model that meets every constraint
    assert summary["constraints_met"] and summary["predicted_latency_ms"] <= T and summary["params"] <= PARAMS_MAX
    pool = [s for s in samples if s["feasible"]] + ([summary["extra"]["greedy"]]
                                                    if summary["extra"]["greedy"]["feasible"] else [])
    assert summary["extra"]["best_reward"] == pytest.approx(max(s["reward"] for s in pool))
    best = summary["extra"]["best_reward"] + 0.1 * abs(summary["extra"]["best_reward_latency_ms"] / (0.975 * T) - 1)
    assert summary["extra"]["reward"] == {"form": "absolute", "beta": -0.1, "target_ms": T, "aimed_ms": 0.975 * T}
    assert summary["accuracy"] == pytest.approx(best)  # the winner is the best-reward model
    assert summary["extra"]["sampled"] == 9 and summary["extra"]["controller_steps"] == 3



TOY = ["--space", str(TOY_SPACE), "--strategy", "mnasnet", "--latency-ms", "0.045", "--data-limit", "64",
       "--epochs", "1", "--bn-batches", "1", "--mnas-steps", "4", "--mnas-archs-per-step", "3", "--seed", "1"]


def test_mnasnet_search_resumes_after_a_kill_with_the_same_result(toy_table, tmp_path):
    full = _search(tmp_path / "full", *TOY, "--table", str(toy_table))
    assert full.returncode == 0, full.stderr
    summary = json.loads(full.stdout)
    assert [h["phase"] for h in read_history(tmp_path / "full")] == ["supernet"] + ["mnasnet"] * 4
    out = tmp_path / "killed"
    # checkpoints every 2 steps: the kill at step 3 loses step 3, which the resumed run redoes identically
    killed = _search(out, *TOY, "--table", str(toy_table), "--mnas-checkpoint-every", "2", crash="controller_step:3")
    assert killed.returncode == 137, killed.stderr
    assert not (out / "summary.json").exists() and len(read_history(out)) == 4
    resumed = _search(out, *TOY, "--table", str(toy_table), "--mnas-checkpoint-every", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    strip = lambda s: {k: v for k, v in s.items() if k != "seconds"}  # noqa: E731
    assert strip(json.loads(resumed.stdout)) == strip(summary)
    assert (out / "history.jsonl").read_text() == (tmp_path / "full" / "history.jsonl").read_text()


def test_proxy_accuracy_and_measured_latency(ort_table, tmp_path):
    out = tmp_path / "r"
    r = _search(out, "--space", str(TOY_SPACE), "--strategy", "mnasnet", "--table", str(ort_table),
                "--latency-ms", "0.5", "--data-limit", "64", "--epochs", "0", "--accuracy", "proxy",
                "--proxy-epochs", "1", "--latency", "measured", "--mnas-measure-repeats", "3",
                "--mnas-measure-warmup", "1", "--mnas-steps", "2", "--mnas-archs-per-step", "1", "--mnas-ppo",
                "--mnas-reward", "hard")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert "proxy training" in s["extra"]["accuracy_kind"] and "measured" in s["extra"]["latency_source"]
    assert s["extra"]["reward"] == {"alpha": 0.0, "beta": -1.0, "target_ms": 0.5}
    assert read_json(out / "config.json", what="config")["strategy_settings"]["controller"]["ppo"] is True
    history = read_history(out)
    assert [h["phase"] for h in history] == ["mnasnet", "mnasnet"]  # --epochs 0 and proxy: no supernet phase
    store = read_json(out / "measurements.json", what="measurements")
    assert store["settings"]["backend"] == "ort-cpu" and store["entries"]
    measured = sorted(e["steady_ms"] for e in store["entries"].values())  # measure_archs: the steady figure
    for h in history:
        for smp in h["samples"]:
            m = smp["measured_latency_ms"]
            assert m is not None and m > 0 and any(m == pytest.approx(v) for v in measured)
            assert m != pytest.approx(smp["latency_ms"])  # a real measurement, not the synthetic table's number
            assert 0.0 <= smp["accuracy"] <= 1.0
            assert smp["reward"] == pytest.approx(mnasnet_reward(smp["accuracy"], m, 0.5, alpha=0.0, beta=-1.0))
    assert s["extra"]["best_measured_latency_ms"] is not None


def test_measured_latency_needs_a_measurable_table(toy_table, tmp_path):
    r = run_cli("search", *TOY, "--table", str(toy_table), "--latency", "measured", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "--latency measured" in r.stderr and "synthetic" in r.stderr
    assert not (tmp_path / "r").exists()  # nothing written


def test_bad_settings_name_their_flag():
    cfg = ControllerConfig()
    for kwargs, flag in [({"steps": 0}, "--mnas-steps"), ({"archs_per_step": 0}, "--mnas-archs-per-step"),
                         ({"proxy_epochs": 0}, "--proxy-epochs"), ({"alpha": 0.5}, "--mnas-alpha"),
                         ({"beta": float("nan")}, "--mnas-beta"), ({"accuracy": "oracle"}, "--accuracy"),
                         ({"latency": "guess"}, "--latency"), ({"measure_repeats": 0}, "--mnas-measure-repeats")]:
        with pytest.raises(InputError, match=flag):
            MnasNet(controller=cfg, **kwargs)
