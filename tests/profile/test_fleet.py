"""A device fleet through the CLI with two stand-in devices: each is a folder the model is pushed to
and a "tool" that checks the pushed file is there and prints a fixed time (device A 2.0 ms, B 3.0 ms),
so where every entry was measured and how the devices disagree are known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.errors import InputError
from hwnas.latency.table import LatencyTable
from hwnas.profile.backend import BackendConfig
from hwnas.profile.device_config import RemoteCommands
from hwnas.profile.fleet import Fleet, merge_anchor
from hwnas.profile.profiler import file_id
from hwnas.space.blocks import op_key
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE, cli_json, run_cli

MS = {"A": 2.0, "B": 3.0}


def _devices(tmp_path: Path) -> list[str]:
    """Two device-config files (stand-in devices A and B) as ``--device-config`` arguments."""
    args = []
    for serial, ms in MS.items():
        folder = tmp_path / f"device_{serial}"
        folder.mkdir()
        cfg = {"format": "hwnas.device_config/1", "serial": serial, "parser": "ms",
               "push_cmd": f"cp {{model}} {folder}/",
               "run_cmd": f"sh -c 'test -f \"$1\" && echo \"latency {ms} ms\"' sh {folder}/{{name}}"}
        path = tmp_path / f"{serial}.json"
        path.write_text(json.dumps(cfg))
        args += ["--device-config", str(path)]
    return args


def test_profile_splits_the_entries_over_two_devices_and_reports_their_disagreement(tmp_path):
    out = tmp_path / "fleet.json"
    data = cli_json("profile", "--space", str(TOY_SPACE), "--backend", "remote", *_devices(tmp_path),
                    "--fleet-anchors", "1", "--chunk", "1", "--repeats", "2", "--warmup", "0", "--remeasure", "0",
                    "--out", str(out))
    table = LatencyTable.load(out)
    keys = {op_key(b) for b in load_space(TOY_SPACE).all_blocks()}
    assert data["entries"] == 4 and set(table.entries) == keys
    d = table.device
    assert d["serial"] == "A,B" and d["fleet"]["serials"] == ["A", "B"]
    anchors = [k for k, e in table.entries.items() if "fleet" in e]
    assert len(anchors) == 1
    a = table.entries[anchors[0]]
    # measured on both: 2.0 and 3.0 ms, (3 - 2) / 2.5 = 40% apart, far beyond a spread of 0 (constant samples)
    assert a["fleet"] == MS and a["disagreement_pct"] == 40.0 and a["beyond_spread"] is True
    assert a["serial"] == "A" and a["steady_ms"] == 2.0  # the median device's (the lower of two)
    for k, e in table.entries.items():  # every other entry: one device's figure, with its serial
        assert e["steady_ms"] == MS[e["serial"]] and e["median_ms"] == MS[e["serial"]]
        pushed = {s for s in MS if (tmp_path / f"device_{s}" / f"{file_id(k)}.onnx").exists()}
        assert pushed == (set(MS) if k == anchors[0] else {e["serial"]})
    f = d["fleet"]
    assert sum(f["entries_per_device"].values()) == 4 and f["anchors"] == 1
    assert f["device_bias"] == {"A": 1.0, "B": 1.5} and f["beyond_spread"] == anchors
    assert f["max_disagreement_pct"] == 40.0 and data["device"]["fleet"] == f


@pytest.mark.slow
def test_latency_measure_splits_the_archs_over_two_devices(tmp_path):
    out = tmp_path / "m.jsonl"
    data = cli_json("latency", "measure", "--space", str(TOY_SPACE), "--archs", "3", "--backend", "remote",
                    *_devices(tmp_path), "--fleet-anchors", "1", "--chunk", "1", "--rounds", "2",
                    "--runs-per-round", "1", "--warmup", "0", "--out", str(out), "--no-progress")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header["device"]["serial"] == "A,B" and len(rows) == data["n"] == 3
    assert [r["fleet"] for r in rows if "fleet" in r] == [MS]
    assert all(r["latency_ms"] == MS[r["serial"]] for r in rows)
    assert data["fleet"]["device_bias"] == {"A": 1.0, "B": 1.5}
    assert sum(data["fleet"]["entries_per_device"].values()) == 3


def test_merge_anchor_and_fleet_checks():
    e = merge_anchor({"A": {"steady_ms": 1.0, "spread_pct": 5.0}, "B": {"steady_ms": 1.1, "spread_pct": 4.0},
                      "C": {"steady_ms": 1.3, "spread_pct": 6.0}})
    assert e["serial"] == "B" and e["steady_ms"] == 1.1 and e["disagreement_pct"] == pytest.approx(27.273)
    assert e["beyond_spread"] is True
    calm = merge_anchor({"A": {"steady_ms": 1.0, "spread_pct": 5.0}, "B": {"steady_ms": 1.02, "spread_pct": 4.0}})
    assert calm["disagreement_pct"] == pytest.approx(1.98, abs=0.01) and calm["beyond_spread"] is False
    one = RemoteCommands(run_cmd="x", parser="ms", serial="S")
    with pytest.raises(InputError, match="serial 'S' names another device"):
        Fleet.of(BackendConfig(backend="remote"), [one, one])
    with pytest.raises(InputError, match="field 'serial' is required"):
        Fleet.of(BackendConfig(backend="remote"), [one, RemoteCommands(run_cmd="x", parser="ms")])
    with pytest.raises(InputError, match="needs --backend remote"):
        Fleet.of(BackendConfig(backend="ort-cpu"), [one, one])


def test_a_fleet_is_refused_where_one_device_is_measured(tmp_path):
    table = tmp_path / "t.json"
    LatencyTable(device={"name": "x", "backend": "remote", "parser": "ms"}, entries={}).save(table)
    r = run_cli("latency", "validate", "--table", str(table), "--space", str(TOY_SPACE), "--samples", "2",
                *_devices(tmp_path))
    assert r.returncode == 2 and "--device-config was given 2 times" in r.stderr
