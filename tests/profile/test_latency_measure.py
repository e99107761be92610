"""``hwnas latency measure``: the pick covers every option over the latency range, the file follows the
``hwnas.measured/1`` contract, and a run killed with SIGKILL resumes without re-timing what it kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.latency.fit_sample import informative_archs, option_pairs
from hwnas.latency.measured import read
from hwnas.space import ArchSettings, load_space

NB = load_space("nasbench201")
SMALL = ArchSettings(resolution=32, width_mult=0.25, num_classes=10)


def test_the_pick_is_stratified_over_the_cost_and_covers_every_option():
    cost = lambda archs: np.array([sum(v == "nor_conv_3x3" for v in a["choices"].values()) for a in archs], float)
    pick = informative_archs(NB, n=10, seed=0, settings=SMALL, cost=cost, cost_name="convs")
    assert pick.uncovered == []
    covered = set().union(*(option_pairs(NB, a) for a in pick.archs))
    # 6 edges x 4 ops that cost something; ``none`` leaves its edge inactive and costs nothing
    assert len(covered) == 24 and all(j != 0 for _, j in covered)
    # ten strata of a pool sorted by the number of 3x3 convs: the cheapest and the dearest are both in
    assert min(pick.cost) == 0.0 and max(pick.cost) >= 3.0 and pick.cost == sorted(pick.cost)


def _measure(out: Path, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "hwnas"
    args = [str(exe), "latency", "measure", "--space", "nasbench201", "--archs", "4", "--out", str(out),
            "--backend", "torch-cpu", "--resolution", "32", "--width-mult", "0.25", "--num-classes", "10",
            "--chunk", "1", "--rounds", "2", "--runs-per-round", "2", "--warmup", "1", "--no-progress", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _archs_in(out: Path) -> list[str]:
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.strip()] if out.exists() else []
    return [json.dumps(x["arch"], sort_keys=True) for x in lines if "arch" in x]


def test_measure_resumes_after_kill_9(tmp_path):
    out = tmp_path / "m.jsonl"
    p = _measure(out)
    deadline = time.time() + 120
    while len(_archs_in(out)) < 2 and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    kept = _archs_in(out)
    assert 2 <= len(kept) < 4, "the run finished before it could be killed"
    again = _measure(out, "--json")
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    r = json.loads(stdout)
    assert r["measured_now"] == 4 - len(kept) and r["lines"] == 4
    assert _archs_in(out)[:len(kept)] == kept
    m = read(out, NB)
    assert len(m) == 4 and (m.latency_ms > 0).all() and m.header["device"]["backend"] == "torch-cpu"
    assert all("spread_pct" in row for row in m.rows)
    # another estimator's numbers are not comparable: refused, file untouched
    before = out.read_bytes()
    other = _measure(out, "--rounds", "3")
    _, err = other.communicate(timeout=120)
    assert other.returncode == 2 and "other estimator settings" in err and out.read_bytes() == before
