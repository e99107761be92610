"""``hwnas search`` end to end on digits: run directory, kill-and-resume, infeasible budget."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import read_history, run_cli, synthetic_table

COMMON = ["--space", "mobilenetv2", "--strategy", "spos-evolution", "--latency-ms", "0.3", "--data-limit", "128",
          "--epochs", "3", "--population", "6", "--generations", "3", "--top-k", "3", "--bn-batches", "1",
          "--seed", "7"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return synthetic_table("mobilenetv2", resolution=32, width_mult=0.25, num_classes=10,
                           path=tmp_path_factory.mktemp("t") / "synthetic.json")


def _search(table, out, *extra, crash: str | None = None) -> subprocess.CompletedProcess:
    return run_cli("search", *COMMON, "--table", str(table), "--out", str(out), "--json", *extra, crash=crash,
                   timeout=600)


def _same(a: dict, b: dict) -> None:
    assert a["arch"] == b["arch"]
    assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-9)
    strip = lambda s: {k: v for k, v in s.items() if k not in ("seconds",)}  # noqa: E731
    assert strip(a) == strip(b)


@pytest.mark.slow
def test_search_kill_and_resume_gives_the_same_result(table, tmp_path):
    full = _search(table, tmp_path / "full")
    assert full.returncode == 0, full.stderr
    summary = json.loads(full.stdout)
    run = tmp_path / "full"
    for f in ("config.json", "history.jsonl", "checkpoint.pt", "summary.json", "best_arch.json", "pareto.png"):
        assert (run / f).exists(), f
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["constraints_met"] and summary["predicted_latency_ms"] <= 0.3
    assert summary["evaluated"] == 18
    history = read_history(run)
    assert [h["phase"] for h in history] == ["supernet"] * 3 + ["spos-evolution"] * 3

    for crash in ("supernet_step:4", "generation:2"):
        out = tmp_path / crash.replace(":", "_")
        killed = _search(table, out, crash=crash)
        assert killed.returncode == 137, killed.stderr
        assert not (out / "summary.json").exists()
        resumed = _search(table, out, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        _same(json.loads(resumed.stdout), summary)
        assert (out / "history.jsonl").read_text() == (run / "history.jsonl").read_text()


def test_infeasible_budget_exits_2_with_the_smallest_latency(table, tmp_path):
    r = run_cli("search", *COMMON[:4], "--latency-ms", "0.0001", "--table", str(table), "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    assert "infeasible" in r.stderr and "smallest achievable" in r.stderr and " ms" in r.stderr
    assert not (tmp_path / "r").exists()


def test_existing_run_needs_resume(table, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text("{}")
    r = run_cli("search", *COMMON, "--table", str(table), "--out", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr
