"""``torchrun --nproc_per_node=2 -m hwnas search`` on gloo (this CPU) against one process with the global
batch: the same losses per step, weights and result; rank 0 alone writes; a run killed on two
processes resumes on one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import TOY_SPACE, read_history, run_cli, synthetic_table

#: One step per epoch (32 training examples, global batch 32), so the history holds every step's loss.
ARGS = ["--space", str(TOY_SPACE), "--strategy", "spos-evolution", "--latency-ms", "10", "--data-limit", "32",
        "--epochs", "4", "--population", "4", "--generations", "2", "--top-k", "2", "--bn-batches", "1",
        "--seed", "3", "--verify", "0"]
RUN_FILES = ["best_arch.json", "checkpoint.pt", "config.json", "history.jsonl", "pareto.png", "summary.json"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return synthetic_table(str(TOY_SPACE), resolution=8, width_mult=1.0, num_classes=10,
                           path=tmp_path_factory.mktemp("t") / "toy.json")


def torchrun(n: int, *args: str, tmp: Path, crash: str | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=n -m hwnas ARGS --json``; scratch files under ``tmp``."""
    exe = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    if crash:
        env["HWNAS_CRASH_AT"] = crash
    return subprocess.run([str(exe), "--standalone", f"--nproc_per_node={n}", "-m", "hwnas", *args, "--json"],
                          capture_output=True, text=True, timeout=600, env=env)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """The supernet's trained weights (BN statistics are recalibrated per candidate when scoring, so after a
    search they are those of whichever candidate a process scored last)."""
    state = torch.load(run / "checkpoint.pt", weights_only=True)["supernet"]
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


@pytest.mark.slow
def test_two_processes_equal_one_with_the_global_batch_and_resume_on_one(table, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    one = run_cli("search", *ARGS, "--table", str(table), "--batch-size", "32", "--out", str(tmp_path / "one"),
                  "--json")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, "search", *ARGS, "--table", str(table), "--batch-size", "16", "--out", str(tmp_path / "two"),
                   tmp=scratch)
    assert two.returncode == 0, two.stderr
    assert len(two.stdout.strip().splitlines()) == 1  # rank 0 alone prints its report
    s1, s2 = json.loads(one.stdout), json.loads(two.stdout)
    assert s2["launch"] == {"processes": 2, "backend": "gloo", "train_device": "cpu", "torchrun": True}
    assert s1["arch"] == s2["arch"] and s1["accuracy"] == s2["accuracy"]  # the same search result
    h1, h2 = read_history(tmp_path / "one"), read_history(tmp_path / "two")
    assert [h["step"] for h in h2 if h["phase"] == "supernet"] == [1, 2, 3, 4]
    for a, b in zip(h1, h2):
        assert a["phase"] == b["phase"]
        if a["phase"] == "supernet":  # one step per epoch: the loss of every step
            assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert max(float((w1[k].double() - w2[k].double()).abs().max()) for k in w1) < 1e-4
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == RUN_FILES  # rank 0's files, nothing else
    assert not list(scratch.glob("hwnas-rank*"))  # the other process's scratch folder is gone
    assert json.loads((tmp_path / "two" / "config.json").read_text())["train"]["batch_size"] == 32  # global

    # killed on two processes after step 3, resumed on one with the same global batch
    cut = tmp_path / "cut"
    killed = torchrun(2, "search", *ARGS, "--table", str(table), "--batch-size", "16", "--out", str(cut),
                      tmp=scratch, crash="supernet_step:3")
    assert killed.returncode != 0 and not (cut / "summary.json").exists()
    other = run_cli("search", *ARGS, "--table", str(table), "--batch-size", "16", "--out", str(cut), "--resume")
    assert other.returncode == 2 and "setting 'train' differs" in other.stderr  # global batch 16 is another run
    resumed = run_cli("search", *ARGS, "--table", str(table), "--batch-size", "32", "--out", str(cut), "--resume",
                      "--json")
    assert resumed.returncode == 0, resumed.stderr
    s3 = json.loads(resumed.stdout)
    assert s3["arch"] == s1["arch"] and s3["accuracy"] == s1["accuracy"]
    for a, b in zip(h1, read_history(cut)):
        assert {k: v for k, v in a.items() if k != "train_loss"} == {k: v for k, v in b.items() if k != "train_loss"}
        assert b.get("train_loss", 0) == pytest.approx(a.get("train_loss", 0), abs=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (NCCL)")
def test_one_gpu_process_under_torchrun_uses_nccl_and_equals_the_cpu_run(table, tmp_path):
    gpu = torchrun(1, "search", *ARGS, "--table", str(table), "--batch-size", "32", "--train-device", "cuda",
                   "--out", str(tmp_path / "gpu"), tmp=tmp_path)
    assert gpu.returncode == 0, gpu.stderr
    s = json.loads(gpu.stdout)
    assert s["launch"] == {"processes": 1, "backend": "nccl", "train_device": "cuda:0", "torchrun": True}
    cpu = run_cli("search", *ARGS, "--table", str(table), "--batch-size", "32", "--train-device", "cpu",
                  "--out", str(tmp_path / "cpu"), "--json")
    assert cpu.returncode == 0, cpu.stderr
    for a, b in zip(read_history(tmp_path / "cpu"), read_history(tmp_path / "gpu")):
        if a["phase"] == "supernet":  # another device, other kernels (TF32 convolutions): close only
            assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.05)
