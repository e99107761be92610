"""``hwnas search --strategy tnas`` end to end on digits (32 px, width 0.25, 64 examples per split):
TNAS-OS on ``nasbench201`` (the ε schedule, the sampler's history, kill and resume) and on
``mobilenetv2`` (every draw within the budget), TNAS with GDAS, and the flags it refuses.

Tables are synthetic (FLOPs-proportional, labelled so): search mechanics, not latency claims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwnas.latency import BatchPredictor, LatencyModel, LatencyTable
from hwnas.space import load_space
from tests.conftest import assert_resume_repeats, read_history, search_runner

COMMON = ["--strategy", "tnas", "--data-limit", "64", "--bn-batches", "1", "--seed", "1", "--verify", "0",
          "--tnas-topk", "3", "--tnas-pool", "3", "--tnas-vae-steps", "20"]
_search = search_runner(*COMMON)


def _nb201(tables) -> list[str]:
    return ["--space", "nasbench201", "--table", str(tables["nasbench201"]), "--latency-ms", "0.3", "--epochs", "2",
            "--tnas-eps-inc", "1"]


def _latency(table: Path, space: str, archs: list[list[int]]) -> np.ndarray:
    bp = BatchPredictor.build(LatencyModel.from_table(LatencyTable.load(table)), load_space(space), resolution=32,
                              width_mult=0.25, num_classes=10)
    return bp.latency(np.asarray(archs, dtype=np.int64))


def _hwnas(capsys, *argv: str) -> tuple[int, str, str]:
    from hwnas.cli.main import main

    capsys.readouterr()
    status = main([*argv, "--json"])
    out = capsys.readouterr()
    return status, out.out, out.err


EVOLUTION = ["--population", "4", "--generations", "2", "--top-k", "2"]


def test_tnas_one_shot_records_its_sampler_and_resumes_after_a_kill(tables, tmp_path):
    args = [*_nb201(tables), *EVOLUTION]
    full = _search(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    s = json.loads(full.stdout)
    t = s["extra"]["tnas"]
    hist = read_history(tmp_path / "full")
    train = [h for h in hist if h["phase"] == "supernet"]
    assert [h["phase"] for h in hist] == ["supernet"] * 2 + ["tnas"] * 2
    assert [h["tnas_eps"] for h in train] == [0.0, 1.0]  # ε = min(1, 1 · epochs done)
    assert [h["tnas_share_vae"] for h in train] == [0.0, 1.0]  # 1 path per epoch: uniform, then p_θ's
    assert all(h["tnas_vae_kl"] >= 0 and h["tnas_vae_recon"] >= 0 for h in train)  # retrained every epoch
    assert [h["tnas_scored"] for h in train] == [3, 6]  # the pool, then pool + the top-k again
    assert t["training_evaluations"] == 9 and t["evaluations"] == 9 + t["search_evaluations"]
    assert t["counts"]["repaired"] + t["counts"]["dropped"] == t["counts"]["infeasible"]
    assert t["vae_parameters"] == 19413 and t["mode"] == "one-shot"
    drawn = [i for i, _ in t["vae_data"]] + t["vae_generated"]
    assert len(t["vae_generated"]) >= 1 and (_latency(tables["nasbench201"], "nasbench201", drawn) <= 0.3).all()
    assert s["predicted_latency_ms"] <= 0.3 and s["strategy"] == "tnas"
    assert s["accuracy"] >= max(a for _, a in t["vae_data"])  # the VAE's data are candidates too
    assert_resume_repeats(_search, args, full=full, full_dir=tmp_path / "full", out=tmp_path / "killed",
                          crash="supernet_step:2")  # after epoch 1's VAE update, before epoch 2's


def test_tnas_on_mobilenetv2_keeps_every_draw_within_the_budget(tables, tmp_path, capsys):
    status, out, err = _hwnas(capsys, "search", "--space", "mobilenetv2", "--table", str(tables["mobilenetv2"]),
                              "--latency-ms", "0.2", "--epochs", "2", "--population", "4", "--generations", "1",
                              "--top-k", "2", "--tnas-eps-inc", "1", "--tnas-tries", "1", *COMMON,
                              "--out", str(tmp_path / "run"))
    assert status == 0, err
    s = json.loads(out)
    t = s["extra"]["tnas"]
    drawn = [i for i, _ in t["vae_data"]] + t["vae_generated"]
    assert (_latency(tables["mobilenetv2"], "mobilenetv2", drawn) <= 0.2).all()
    assert t["counts"]["repaired"] + t["counts"]["dropped"] == t["counts"]["infeasible"]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["strategy_settings"]
    assert cfg["schedule"]["eps_inc"] == 1.0 and cfg["schedule"]["tries"] == 1 and cfg["gradient"] == "none"
    assert load_space("mobilenetv2").validate_arch(s["arch"]) and s["predicted_latency_ms"] <= 0.2


def test_tnas_with_gdas_trains_the_proposed_paths(tables, tmp_path, capsys, monkeypatch):
    """In process, with spies that call the real functions: every weight step whose path the
    learned sampler proposed trains that path; the architecture steps stay GDAS's (α's gradient)."""
    import hwnas.search.strategies.msgdas as msgdas
    from hwnas.search.tnas_sampler import LearnedSampler

    proposed, weight_rows, arch_steps = [], [], []
    real_propose, real_losses = LearnedSampler.propose, msgdas.subgraph_losses

    def propose_spy(self, rng):
        out = real_propose(self, rng)
        proposed.append(None if out is None else out.tolist())
        return out

    def losses_spy(supernet, x, y, rows, **kw):
        if rows[0].requires_grad:
            arch_steps.append(1)
        else:
            weight_rows.append([int(r[0].argmax()) for r in rows])
        return real_losses(supernet, x, y, rows, **kw)

    monkeypatch.setattr(LearnedSampler, "propose", propose_spy)
    monkeypatch.setattr(msgdas, "subgraph_losses", losses_spy)
    status, out, err = _hwnas(capsys, "search", *_nb201(tables), "--tnas-gradient", "gdas", "--msgdas-samples", "1",
                              *COMMON, "--out", str(tmp_path / "run"))
    assert status == 0, err
    assert len(proposed) == len(weight_rows) == len(arch_steps) == 2  # 1 step per epoch
    assert proposed[0] is None and proposed[1] is not None  # ε = 0, then 1
    assert weight_rows[1] == proposed[1]
    s = json.loads(out)
    hist = read_history(tmp_path / "run")
    assert [h["phase"] for h in hist] == ["msgdas"] * 2
    assert [h["tnas_eps"] for h in hist] == [0.0, 1.0]
    assert [h["tnas_share_vae"] for h in hist] == [0.0, 1.0]  # GDAS's own path, then p_θ's
    assert all("tnas_vae_kl" in h for h in hist) and s["extra"]["tnas"]["training_evaluations"] == 9
    assert s["extra"]["gdas"] is True and s["extra"]["tnas"]["mode"] == "gdas" and s["strategy"] == "tnas"


@pytest.mark.slow
def test_tnas_with_gdas_resumes_after_a_kill(tables, tmp_path):
    """(The one-shot mode's kill and resume: ``test_tnas_one_shot_records_its_sampler_and_resumes_after_a_kill``.)"""
    args = [*_nb201(tables), "--tnas-gradient", "gdas", "--msgdas-samples", "1"]
    crash = "msgdas_step:2"
    full = _search(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    assert_resume_repeats(_search, args, full=full, full_dir=tmp_path / "full", out=tmp_path / "killed", crash=crash)


@pytest.mark.parametrize("flags,message", [
    (["--pareto", "0.2,0.3"], "--pareto is supported by spos-evolution and random, not tnas"),
    (["--sampling", "fair"], "--sampling and --constraint-aware do not apply to --strategy tnas"),
    (["--shared-epochs", "1"], "--shared-epochs does not apply to --strategy tnas"),
    (["--tnas-eps-inc", "1.5"], "--tnas-eps-inc must be in [0, 1]"),
    (["--tnas-d-model", "30", "--tnas-heads", "4"], "--tnas-d-model must be a positive multiple of --tnas-heads"),
    (["--tnas-gradient", "gdas", "--msgdas-k", "3"], "--strategy gdas fixes --msgdas-k"),
])
def test_tnas_refuses_what_it_would_ignore(tables, tmp_path, capsys, flags, message):
    status, _, err = _hwnas(capsys, "search", *_nb201(tables), *COMMON, *flags, "--out", str(tmp_path / "run"))
    assert status == 2 and message in err and not (tmp_path / "run").exists()
