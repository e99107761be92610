"""The real CLI: spaces, arch show, bad input, --json discipline."""

from __future__ import annotations

import json

from tests.conftest import cli_json, run_cli


def test_spaces_json():
    data = cli_json("spaces")
    names = {s["name"]: s for s in data["spaces"]}
    assert "mobilenet_v2" in names["mobilenetv2"]["presets"]
    assert names["mobilenetv2"]["decisions"] == 16
    assert all(set(s) >= {"name", "decisions", "size_log10", "presets"} for s in data["spaces"])


def test_arch_show_preset_and_out(tmp_path):
    out = tmp_path / "mbv2.json"
    data = cli_json("arch", "show", "--space", "mobilenetv2", "--preset", "mobilenet_v2", "--out", str(out))
    assert data["params"] == 3_504_872 and data["latency_ms"] is None
    assert data["flops"] == sum(b["flops"] for b in data["blocks"])
    arch = json.loads(out.read_text())
    assert arch["space"] == "mobilenetv2" and arch["resolution"] == 224
    again = cli_json("arch", "show", "--arch", str(out), "--resolution", "32")
    assert again["arch"]["resolution"] == 32 and again["params"] == data["params"]


def test_arch_show_human_output():
    r = run_cli("arch", "show", "--space", "shufflenetv2", "--preset", "shufflenet_v2_x1_0")
    assert r.returncode == 0
    assert "2.279M params" in r.stdout and "MaxPool-input:112x112x24-output:56x56x24" in r.stdout


def test_arch_show_with_table_and_missing_keys(tmp_path):
    from hwnas.latency.table import LatencyTable
    from hwnas.space.blocks import op_key
    from hwnas.space.loader import load_space
    from tests.conftest import TOY_SPACE

    sp = load_space(TOY_SPACE)
    keys = [op_key(b) for b in sp.resolve(sp.preset("big"))]
    # stem, l1 = k5, l2 = k3, l3 = k5 (same key as l1), logits
    ms = {keys[0]: 1.0, keys[1]: 2.0, keys[2]: 3.0, keys[4]: 5.0}
    entries = {k: {"median_ms": v, "mean_ms": v, "std_ms": 0.0, "p10_ms": v, "p90_ms": v, "count": 1}
               for k, v in ms.items()}
    table = tmp_path / "t.json"
    LatencyTable(device={"backend": "test", "resolution": 8}, entries=entries).save(table)
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps(sp.preset("big")))
    data = cli_json("arch", "show", "--space", str(TOY_SPACE), "--arch", str(arch), "--table", str(table))
    # stem 1 + l1 (k5) 2 + l2 (k3) 3 + l3 (k5, same key as l1) 2 + logits 5 = 13 ms
    assert data["latency_ms"] == 13.0
    small = tmp_path / "s.json"
    small.write_text(json.dumps(sp.preset("small", resolution=16)))
    r = run_cli("arch", "show", "--space", str(TOY_SPACE), "--arch", str(small), "--table", str(table))
    assert r.returncode == 2 and "resolution 8" in r.stderr


def test_no_command_is_usage_error():
    assert run_cli().returncode == 2
