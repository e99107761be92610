"""``hwnas supernet rank`` end to end on digits: kill after the 2nd stand-alone result, resume, bad input."""

from __future__ import annotations

import json

import pytest

from tests.conftest import read_history, run_cli

TINY = ["--space", "mobilenetv2", "--data-limit", "64", "--archs", "4", "--epochs", "1", "--pool", "64",
        "--bn-batches", "1", "--weight-sharing", "entangled", "--seed", "3"]


@pytest.mark.slow  # two CLI processes (about 6 s of imports each) and six short trainings: 25-30 s on 2 cores
def test_rank_kill_after_two_results_and_resume(tables, tmp_path, capsys):
    out = tmp_path / "rank"
    args = ["supernet", "rank", *TINY, "--table", str(tables["mobilenetv2"]), "--out", str(out), "--json"]
    killed = run_cli(*args, crash="standalone_done:2", timeout=600)
    assert killed.returncode == 137, killed.stderr
    done = out / "standalone"
    assert sorted(p.name for p in done.glob("*.json")) == ["00.json", "01.json"]
    assert not (out / "ranking.json").exists()
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in
            [done / "00.json", done / "01.json", done / "00" / "checkpoint.pt", done / "01" / "checkpoint.pt",
             out / "supernet" / "checkpoint.pt", out / "supernet_scores.json", out / "sample.json"]}
    supernet_history = read_history(out / "supernet")

    from hwnas.cli.main import main

    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # an existing check is not overwritten

    resumed = run_cli(*args, "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    r = json.loads(resumed.stdout)
    for p, (mtime, data) in kept.items():  # finished results, the supernet and its scores: not recomputed
        assert (p.stat().st_mtime_ns, p.read_bytes()) == (mtime, data), p
    assert read_history(out / "supernet") == supernet_history
    assert r["n"] == 4 and r["reused"] == 2 and len(r["pairs"]) == 4
    for key in ("kendall_tau", "spearman", "top5_overlap", "plot"):
        assert key in r
    for v in (r["kendall_tau"], r["spearman"]):
        assert v is None or -1.0 <= v <= 1.0
    assert 0.0 <= r["top5_overlap"] <= 1.0 and r["top_k"] == 4
    lat = [p["predicted_latency_ms"] for p in r["pairs"]]
    assert lat == sorted(lat) and len({json.dumps(p["arch"], sort_keys=True) for p in r["pairs"]}) == 4
    for i, p in enumerate(r["pairs"]):
        assert p["index"] == i and len(p["indices"]) == 16 and p["arch"]["space"] == "mobilenetv2"
        assert 0.0 <= p["supernet_accuracy"] <= 1.0 and 0.0 <= p["standalone_accuracy"] <= 1.0
        assert p["standalone_accuracy"] == json.loads((done / f"{i:02d}.json").read_text())["standalone_accuracy"]
    assert (out / "ranking.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and r["plot"] == str(out / "ranking.png")
    assert json.loads((out / "ranking.json").read_text()) == r


def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(tables, tmp_path, capsys):
    out = tmp_path / "rank"
    r = run_cli("supernet", "rank", *TINY, "--archs", "2", "--table", str(tables["mobilenetv2"]), "--out", str(out))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "--archs" in r.stderr
    assert not out.exists()

    from hwnas.cli.main import main

    cases = [(["--run", str(tmp_path / "missing")], "--run"),
             (["--space", "no-such-space", "--table", str(tables["mobilenetv2"])], "space"),
             (["--space", "mobilenetv2"], "--table"),
             (["--run", str(tmp_path), "--space", "mobilenetv2"], "--space")]
    for extra, named in cases:
        assert main(["supernet", "rank", *extra, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("hwnas: error: ") and len(err.splitlines()) == 1 and named in err, err
        assert not out.exists()
