"""The ranking check's orchestration in process: the stratified sample and a supernet from a search run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.jsonio import write_json_atomic
from hwnas.latency import BatchPredictor, LatencyModel
from hwnas.space import ArchSettings, arch_id, load_space
from hwnas.supernet import SuperNet
from hwnas.supernet.rank_check import RankCheckConfig, run_rank_check, source_from_run, stratified_sample
from hwnas.train import save_checkpoint

SETTINGS = ArchSettings(resolution=32, width_mult=0.25, num_classes=10)


def test_sample_is_stratified_distinct_and_deterministic(tables):
    space = load_space("mobilenetv2")
    predictor = BatchPredictor.build(LatencyModel.load(tables["mobilenetv2"]), space, resolution=32, width_mult=0.25,
                                     num_classes=10)
    a = stratified_sample(space, predictor, n=6, pool=300, seed=1, settings=SETTINGS)
    assert a == stratified_sample(space, predictor, n=6, pool=300, seed=1, settings=SETTINGS)
    assert a != stratified_sample(space, predictor, n=6, pool=300, seed=2, settings=SETTINGS)
    lat = [s["predicted_latency_ms"] for s in a]
    assert lat == sorted(lat) and len({arch_id(space, s["arch"]) for s in a}) == 6
    for s in a:  # the stored indices are those of the stored (canonical) arch, latency predicted from them
        assert s["indices"] == space.encode(s["arch"]).tolist()
        assert s["predicted_latency_ms"] == pytest.approx(float(predictor.latency(np.array([s["indices"]]))[0]))
    pool = np.sort(predictor.latency((np.random.default_rng([1, 0x52414E4B]).random((300, 16))
                                      * np.asarray(space.num_options)).astype(np.int64)))
    edges = [pool[i[0]] for i in np.array_split(np.arange(300), 6)] + [pool[-1]]
    for s, lo, hi in zip(a, edges, edges[1:]):  # one architecture per latency quantile bin
        assert lo <= s["predicted_latency_ms"] <= hi


def _fake_search_run(folder, table) -> None:
    """A finished search run folder as ``hwnas search`` leaves it (config, summary, supernet checkpoint)."""
    space = load_space("mobilenetv2")
    torch.manual_seed(0)
    net = SuperNet(space, resolution=32, width_mult=0.25, num_classes=10, sharing="entangled")
    write_json_atomic(folder / "config.json", {
        "space": "mobilenetv2", "strategy": "spos-evolution", "table": str(table), "data": "digits",
        "data_limit": 32, "seed": 5, "bn_batches": 1, "weight_sharing": "entangled",
        "resolved": {"resolution": 32, "width_mult": 0.25, "num_classes": 10}})
    write_json_atomic(folder / "summary.json", {"accuracy": 0.1})
    save_checkpoint(folder / "checkpoint.pt", {"phase": "search", "supernet": net.state_dict(), "summary": {}})


def test_rank_from_a_search_run_uses_its_weights_and_settings(tables, tmp_path):
    run = tmp_path / "search"
    _fake_search_run(run, tables["mobilenetv2"])
    source = source_from_run(run)
    assert (source.seed, source.data_limit, source.weight_sharing, source.resolution) == (5, 32, "entangled", 32)
    config = RankCheckConfig(archs=3, epochs=1, pool=30, batch_size=32)
    r = run_rank_check(source, config, out=tmp_path / "rank", resume=False, progress=False)
    assert r["n"] == 3 and r["supernet"] == str(run) and r["reused"] == 0
    assert not (tmp_path / "rank" / "supernet").exists()  # nothing trained: the run's weights are scored
    again = run_rank_check(source, config, out=tmp_path / "rank", resume=True, progress=False)
    assert again == r == json.loads((tmp_path / "rank" / "ranking.json").read_text())
