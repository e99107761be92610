"""Latency tables: atomic writes, merging (and its refusal across devices/settings), scope checks,
missing keys named with exit 2 — on hand-made tables with hand-checkable numbers."""

from __future__ import annotations

import json
import os

import pytest

from hwnas.errors import InputError
from hwnas.latency.table import LatencyTable, entry_cv, entry_from_samples
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE, cli_json, run_cli

DEVICE = {"name": "box", "backend": "ort-cpu", "threads": 1, "batch": 1, "dtype": "float32", "host": "h",
          "processor": "cpu", "versions": {"onnxruntime": "1"}, "resolution": 8, "width_mult": 1.0,
          "num_classes": 4, "spaces": ["toy"]}


def _entry(ms: float) -> dict:
    return {"median_ms": ms, "mean_ms": ms, "std_ms": 0.0, "p10_ms": ms, "p90_ms": ms, "count": 1}


def _table(entries: dict[str, float], **device) -> LatencyTable:
    return LatencyTable(device={**DEVICE, **device}, entries={k: _entry(v) for k, v in entries.items()})


def test_entry_statistics_by_hand():
    e = entry_from_samples([1.0, 2.0, 3.0, 4.0, 10.0])
    assert e["median_ms"] == 3.0 and e["mean_ms"] == 4.0 and e["count"] == 5
    assert e["std_ms"] == pytest.approx(3.5355339, rel=1e-6)  # sqrt(50 / 4)
    assert e["p10_ms"] == pytest.approx(1.4) and e["p90_ms"] == pytest.approx(7.6)
    assert entry_cv(e) == pytest.approx(3.5355339 / 4.0, rel=1e-6)


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    _table({"a": 1.0}).save(path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _table({"a": 2.0, "b": 3.0}).save(path)
    assert path.read_bytes() == before  # the old table is intact
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # and no temp file is left behind


def test_merge_two_spaces_of_one_device():
    a = _table({"x": 1.0, "shared": 2.0}, spaces=["toy"])
    b = _table({"y": 3.0, "shared": 9.0}, spaces=["other"])
    m = a.merge(b)
    assert {k: v["median_ms"] for k, v in m.entries.items()} == {"x": 1.0, "shared": 2.0, "y": 3.0}
    assert m.device["spaces"] == ["toy", "other"]


@pytest.mark.parametrize("field, value", [
    ("threads", 4), ("processor", "other cpu"), ("backend", "torch-cpu"), ("resolution", 16),
    ("width_mult", 0.5), ("num_classes", 10), ("versions", {"onnxruntime": "2"}), ("parser", "ms"),
])
def test_merge_refuses_other_devices_and_settings(field, value):
    a, b = _table({"x": 1.0}), _table({"y": 1.0}, **{field: value})
    with pytest.raises(InputError, match=f"device.{field} is"):
        a.merge(b)


def test_merge_cli(tmp_path):
    _table({"x": 1.0}).save(tmp_path / "a.json")
    _table({"y": 2.0}, spaces=["other"]).save(tmp_path / "b.json")
    _table({"z": 2.0}, threads=2).save(tmp_path / "c.json")
    data = cli_json("latency", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                    "--out", str(tmp_path / "m.json"))
    assert data["entries"] == 2 and data["out"] == str(tmp_path / "m.json")
    assert set(LatencyTable.load(tmp_path / "m.json").entries) == {"x", "y"}
    r = run_cli("latency", "merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(tmp_path / "n.json"))
    assert r.returncode == 2 and "device.threads is 1 in one and 2 in the other" in r.stderr
    assert not (tmp_path / "n.json").exists()


def test_check_arch_refuses_other_resolution_width_and_classes():
    sp = load_space(TOY_SPACE)
    t = _table({})
    t.check_arch(sp.preset("big"))
    with pytest.raises(InputError, match="measured at resolution 8, but the architecture is at 16"):
        t.check_arch(sp.preset("big", resolution=16))
    with pytest.raises(InputError, match="width_mult 1.0, but the architecture has 0.5"):
        t.check_arch(sp.preset("big", width_mult=0.5))
    with pytest.raises(InputError, match="num_classes 4, but the architecture has 10"):
        t.check_arch(sp.preset("big", num_classes=10))


def test_table_of_another_width_is_never_silently_used(tmp_path):
    """arch show prices the blocks only when every key is in the table; otherwise exit 2 naming them."""
    sp = load_space(TOY_SPACE)
    from hwnas.space.blocks import op_key

    keys = [op_key(b) for b in sp.all_blocks()]  # width 1.0
    _table({k: 1.0 for k in keys}).save(tmp_path / "t.json")
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps(sp.preset("big", width_mult=2.0)))
    r = run_cli("arch", "show", "--arch", str(arch), "--space", str(TOY_SPACE), "--table", str(tmp_path / "t.json"))
    assert r.returncode == 2
    assert "has no entry for 4 block(s): Conv-input:8x8x3-output:8x8x16" in r.stderr
    arch.write_text(json.dumps(sp.preset("big")))
    ok = cli_json("arch", "show", "--arch", str(arch), "--space", str(TOY_SPACE), "--table", str(tmp_path / "t.json"))
    assert ok["latency_ms"] == 5.0  # 5 blocks at 1 ms each


def test_malformed_tables_are_input_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "hwnas.latency_table/1", "device": {"backend": "x"},
                               "entries": {"k": {"median_ms": -1}}}))
    with pytest.raises(InputError, match=r"entries\['k'\].median_ms must be a non-negative number"):
        LatencyTable.load(bad)
    r = run_cli("latency", "merge", str(bad), str(bad), "--out", str(tmp_path / "m.json"))
    assert r.returncode == 2 and "median_ms" in r.stderr
