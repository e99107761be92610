"""``hwnas search --strategy msgdas`` end to end on digits (32 px, width 0.25, 128 examples per split).

Tables are synthetic (FLOPs-proportional, labelled so): these tests check search mechanics, not
latency claims.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import assert_resume_repeats, read_history, run_cli, search_runner

COMMON = ["--strategy", "msgdas", "--data-limit", "128", "--bn-batches", "1", "--msgdas-samples", "2",
          "--seed", "3"]


_search = search_runner(*COMMON)



def test_mobilenet_space_latency_loss_pulls_expected_latency_down(tables, tmp_path):
    run = tmp_path / "mbv2"
    r = _search("--space", "mobilenetv2", "--table", str(tables["mobilenetv2"]), "--latency-ms", "0.2",
                "--epochs", "3", "--out", str(run), "--msgdas-k", "2", "--msgdas-arch-lr", "0.1",
                "--msgdas-latency-loss", "add", "--msgdas-latency-lambda", "20", "--msgdas-dropblock-max", "0.2",
                "--msgdas-dropblock-steps", "2")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert json.loads((run / "summary.json").read_text()) == summary
    for f in ("config.json", "checkpoint.pt", "best_arch.json", "pareto.png", "alpha_heatmap.png"):
        assert (run / f).exists(), f
    hist = read_history(run)
    assert [h["phase"] for h in hist] == ["msgdas"] * 3 and [h["epoch"] for h in hist] == [1, 2, 3]
    # 2 steps per epoch (128 examples, batch 64): τ 10 → 1 and λ 0 → 0.01 over steps 0..5
    assert [h["w_tau"] for h in hist] == pytest.approx([10 - 9 * 0.5 / 5, 10 - 9 * 2.5 / 5, 10 - 9 * 4.5 / 5])
    assert [h["w_lambda"] for h in hist] == pytest.approx([0.01 * 0.5 / 5, 0.01 * 2.5 / 5, 0.01 * 4.5 / 5])
    assert [h["w_dropblock"] for h in hist] == pytest.approx([0.0, 0.1, 0.2])  # steps (0,1), (2,3), (4,5)
    # the additive latency term dominates: E[LAT] under softmax(α) falls every epoch
    lat = [h["expected_latency_ms"] for h in hist]
    assert lat[0] > lat[1] > lat[2]
    assert summary["extra"]["expected_latency_ms"] == pytest.approx(lat[-1], rel=1e-6)
    # derivation by argmax of α, the same arch as the summary's
    derived = summary["extra"]["derived"]
    assert derived == hist[-1]["derived"]
    probs = summary["extra"]["final_probs"]
    assert all(p[d] == max(p) for p, d in zip(probs, derived))
    assert summary["strategy"] == "msgdas" and summary["evaluated"] >= 1
    assert summary["predicted_latency_ms"] == pytest.approx(hist[-1]["derived_latency_ms"], rel=1e-9)
    assert json.loads((run / "best_arch.json").read_text()) == summary["arch"]
    cfg = json.loads((run / "config.json").read_text())["strategy_settings"]
    assert cfg["k"] == 2 and cfg["latency_loss"] == "add" and cfg["dropblock"]["max_ratio"] == 0.2


def test_shufflenet_space_all_four_exclusive_subgraphs_with_guidance(tables, tmp_path, capsys, monkeypatch):
    """In process (``hwnas.cli.main.main``), with spies on the step's pieces (they call the real
    functions and change nothing): every step's K = 4 sub-graphs take the 4 options of every
    decision once each, and from the step where λ > 0 each sub-graph's loss is
    CE + λ · CE(p_super, p_sub) with that guidance term non-zero."""
    import hwnas.search.strategies.msgdas as msgdas
    from hwnas.cli.main import main

    steps, ces, sces = [], [], []
    orig = {n: getattr(msgdas, n) for n in ("sample_subgraphs", "subgraph_losses", "classification_loss",
                                            "soft_cross_entropy")}

    def sample_spy(alphas, k, tau, **kw):
        rows = orig["sample_subgraphs"](alphas, k, tau, **kw)
        steps.append({"options": [r.detach().argmax(-1).tolist() for r in rows],  # per decision, K options
                      "onehot": all(torch.allclose(r.detach(), F.one_hot(r.detach().argmax(-1), r.shape[-1]).to(r.dtype),
                                                   atol=1e-6) for r in rows)})
        return rows

    def losses_spy(supernet, x, y, rows, *, soft, lam, identity_fn):
        n_ce, n_sce = len(ces), len(sces)
        losses, acc = orig["subgraph_losses"](supernet, x, y, rows, soft=soft, lam=lam, identity_fn=identity_fn)
        steps[-1].update(lam=lam, losses=[float(v.detach()) for v in losses], ce=ces[n_ce:], sce=sces[n_sce:],
                         soft_rows_sum=None if soft is None else soft.sum(1).tolist())
        return losses, acc

    def ce_spy(logits, y, *a, **kw):
        out = orig["classification_loss"](logits, y, *a, **kw)
        ces.append(float(out.detach()))
        return out

    def sce_spy(logits, target):
        out = orig["soft_cross_entropy"](logits, target)
        sces.append(float(out.detach()))
        return out

    for name, fn in (("sample_subgraphs", sample_spy), ("subgraph_losses", losses_spy),
                     ("classification_loss", ce_spy), ("soft_cross_entropy", sce_spy)):
        monkeypatch.setattr(msgdas, name, fn)
    run = tmp_path / "shuffle"
    rc = main(["search", *COMMON, "--space", "spos-shufflenet", "--table", str(tables["spos-shufflenet"]),
               "--latency-ms", "1", "--epochs", "1", "--out", str(run), "--msgdas-k", "4", "--msgdas-lambda", "0.5",
               "--data-limit", "64", "--batch-size", "32", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    (h,) = read_history(run)
    assert h["w_lambda"] == pytest.approx(0.25)  # steps 0 and 1 of 2: λ = 0 and 0.5
    assert summary["extra"]["k"] == 4 and len(summary["extra"]["derived"]) == 20
    assert summary["constraints_met"] == summary["extra"]["derived_feasible"]
    # 2 steps, each a weight step and an architecture step: 4 draws of K = 4 sub-graphs
    assert len(steps) == 4
    for st in steps:
        assert st["onehot"] and len(st["options"]) == 20
        # the four sub-graphs are mutually exclusive: each decision's 4 options, each exactly once
        assert all(sorted(opts) == [0, 1, 2, 3] for opts in st["options"]), st["options"]
    # not the same permutation every time: the sampler draws fresh noise per step
    assert len({tuple(map(tuple, st["options"])) for st in steps}) == 4
    assert sorted(st["lam"] for st in steps) == pytest.approx([0.0, 0.0, 0.5, 0.5])
    for st in steps:
        assert len(st["ce"]) == 4 and len(st["losses"]) == 4
        if st["lam"] == 0:  # λ = 0: no super-net pass, the loss is the plain CE
            assert st["sce"] == [] and st["soft_rows_sum"] is None
            assert st["losses"] == pytest.approx(st["ce"], rel=1e-6)
            continue
        # λ > 0: soft labels are probabilities, and the guidance term is in every sub-graph's loss
        assert st["soft_rows_sum"] == pytest.approx([1.0] * 32, abs=1e-5)
        assert len(st["sce"]) == 4
        for loss, ce, sce in zip(st["losses"], st["ce"], st["sce"]):
            assert 0.5 * sce > 0.1  # non-zero: CE against soft labels is at least their entropy
            assert loss == pytest.approx(ce + 0.5 * sce, rel=1e-5)


def test_bad_k_exits_2_before_writing_anything(tables, tmp_path):
    out = tmp_path / "r"
    r = run_cli("search", "--space", "spos-shufflenet", "--strategy", "msgdas", "--table",
                str(tables["spos-shufflenet"]), "--latency-ms", "1", "--msgdas-k", "5", "--out", str(out))
    assert r.returncode == 2 and "--msgdas-k 5 exceeds the 4 options" in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_result(tables, tmp_path):
    args = ["--space", "mobilenetv2", "--table", str(tables["mobilenetv2"]), "--latency-ms", "0.3", "--epochs", "2",
            "--msgdas-arch-lr", "0.05", "--msgdas-dropblock-max", "0.3", "--msgdas-dropblock-steps", "1",
            "--msgdas-lambda", "0.1"]
    full = _search(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    assert_resume_repeats(_search, args, full=full, full_dir=tmp_path / "full", out=tmp_path / "killed",
                          crash="msgdas_step:3")
