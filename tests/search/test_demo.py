"""``make demo`` in CI-sized form: the whole main job through the CLI's ``demo`` command.

The quick demo's own budget (0.8 x mobilenet_v2) is a claim about the machine: on a busy CI VM
both verified candidates can measure over it, and the run then rightly exits 1. This test is about
the pipeline, so it runs ``hwnas demo --quick`` in process with two sizes changed
(``DemoConfig.quick`` patched): a budget of 2 x mobilenet_v2, which every architecture of the space
meets by prediction (the largest is predicted about 1.2-1.3x mobilenet_v2 by the shipped 32-px
table), so measured selection succeeds on any machine that times models side by side; and
enough retraining epochs that the held-out accuracy is well above chance (0.1).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

#: Budget factor of the test: 2 x mobilenet_v2 (the largest factor --latency-rel accepts).
BUDGET_FACTOR = 2.0
#: Retraining epochs of the winner (the quick demo's 1 epoch stays at chance, 0.12 held out; 10 epochs: 0.88).
TRAIN_EPOCHS = 10


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys, monkeypatch):
    from hwnas.cli.demo import DemoConfig
    from hwnas.cli.main import main

    quick = DemoConfig.quick
    monkeypatch.setattr(DemoConfig, "quick", classmethod(
        lambda cls: replace(quick(), budget_factor=BUDGET_FACTOR, train_epochs=TRAIN_EPOCHS)))
    run, export = tmp_path / "runs" / "demo", tmp_path / "export" / "demo"
    code = main(["demo", "--quick", "--run", str(run), "--export", str(export), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]  # no skip, no accepted exit 1: this budget is met measured
    report = json.loads(out.out)
    summary = json.loads((run / "summary.json").read_text())
    card = json.loads((export / "card.json").read_text())
    assert (export / "model.onnx").is_file() and (run / "best_arch.json").is_file()
    assert summary["arch"] == card["arch"]
    assert report["constraints_met"] and report["predicted_latency_ms"] <= report["latency_budget_ms"]
    assert report["max_abs_diff"] <= 1e-4
    assert report["latency_source"] == "measured" and report["constraints_judged_on"] == "measured"
    assert report["budget_factor"] == BUDGET_FACTOR and report["reference_preset"] == "mobilenet_v2"
    assert report["latency_budget_ms"] == pytest.approx(BUDGET_FACTOR * report["reference_predicted_ms"])
    assert report["measured_ratio"] <= BUDGET_FACTOR and report["measured_latency_ms"] > 0
    assert report["reference_measured_ms"] > 0
    assert report["export_measured_latency_ms"] > 0 and 1 <= report["verified"] <= 2
    # the retrained winner learned the digits: chance is 0.1 (10 classes)
    assert report["retrained_accuracy"] > 0.5
    assert json.loads((run / "retrain" / "summary.json").read_text())["epochs"] == TRAIN_EPOCHS
    assert report["onnx_accuracy"] == pytest.approx(report["retrained_accuracy"])  # same held-out images
    # the supernet's ranking was measured (3 archs, 1 stand-alone epoch) and is reported as such
    ranking = json.loads((run / "rank" / "ranking.json").read_text())
    assert report["rank_archs"] == ranking["n"] == 3 and report["supernet_kendall_tau"] == ranking["kendall_tau"]
    from hwnas.cli.demo import render
    assert "measured over 3 architectures" in render(report)
    assert "not measured" in render({**report, "rank_archs": 0})
