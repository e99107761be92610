"""Untrusted files stay data (SECURITY.md): a table's commands never run, parsing is bounded, and
every bad path or flag is one sentence with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.errors import InputError
from hwnas.latency.table import LatencyTable
from tests.conftest import TOY_SPACE, run_cli, shared_reference, synthetic_table

PROXYLESS_YAML = ("latency_tables", "proxylessnas_pixel1_mobile_trim.yaml")  # under ../shared/reference


@pytest.fixture(scope="module")
def evil_table(tmp_path_factory) -> tuple[Path, Path]:
    """A toy table whose header claims a remote device and carries commands that create a marker file."""
    d = tmp_path_factory.mktemp("evil")
    marker = d / "PWNED"
    path = synthetic_table(str(TOY_SPACE), resolution=8, width_mult=1.0, num_classes=4, path=d / "t.json")
    raw = json.loads(path.read_text())
    raw["device"].update(backend="remote", parser="ms", push_cmd=f"touch {marker}",
                         run_cmd=f"sh -c 'touch {marker}; echo 1.0'", info_cmd=f"touch {marker}")
    path.write_text(json.dumps(raw))
    return path, marker


def _arch_file(tmp_path: Path) -> Path:
    p = tmp_path / "arch.json"
    p.write_text(json.dumps({"space": "toy", "resolution": 8, "choices": {"l1": "k3", "l2": "skip", "l3": "k5"}}))
    return p


def test_loading_a_table_drops_its_commands_with_a_warning(evil_table):
    path, marker = evil_table
    with pytest.warns(UserWarning, match="ignoring device.push_cmd, device.run_cmd, device.info_cmd"):
        t = LatencyTable.load(path)
    assert t.device["backend"] == "remote" and not {"push_cmd", "run_cmd", "info_cmd"} & set(t.device)
    assert not marker.exists()


def test_export_with_a_remote_table_and_no_device_config_is_predicted_only(evil_table, tmp_path):
    path, marker = evil_table
    out = tmp_path / "ex"
    r = run_cli("export", "--arch", str(_arch_file(tmp_path)), "--space", str(TOY_SPACE), "--table", str(path),
                "--out", str(out), "--no-progress", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["measured_latency_ms"] is None and data["predicted_latency_ms"] > 0
    assert "predicted only" in (out / "card.md").read_text()
    assert "hwnas: warning: latency table" in r.stderr and r.stderr.count("ignoring device.") == 1
    assert not marker.exists()


@pytest.mark.parametrize("command", [
    ["latency", "validate", "--samples", "2", "--calibration-samples", "0"],
    ["latency", "calibrate", "--samples", "5"],
    ["search", "--strategy", "mnasnet", "--latency", "measured", "--latency-ms", "1", "--epochs", "0",
     "--accuracy", "proxy", "--data-limit", "32"],
])
def test_measuring_commands_stop_without_a_device_config(evil_table, tmp_path, command):
    path, marker = evil_table
    extra = ["--out", str(tmp_path / "run")] if command[0] == "search" else []
    r = run_cli(*command, "--table", str(path), "--space", str(TOY_SPACE), *extra)
    assert r.returncode == 2, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("hwnas: error:") and "never runs commands from a file" in first
    assert "--device-config" in first and not marker.exists() and not (tmp_path / "run").exists()


def test_a_device_config_is_validated_strictly(tmp_path):
    from hwnas.profile.device_config import load_device_config

    def cfg(**fields) -> Path:
        p = tmp_path / "dev.json"
        p.write_text(json.dumps(fields))
        return p

    good = load_device_config(cfg(run_cmd="adb shell perf {name}", parser="ort-perf-test", serial="R58"))
    assert good.run_cmd == "adb shell perf {name}" and good.serial == "R58" and "dev.json" in good.source
    for fields, match in [({"parser": "ms"}, "field 'run_cmd' is required"),
                          ({"run_cmd": "x"}, "field 'parser' is required"),
                          ({"run_cmd": "x", "parser": "nope"}, "field 'parser' 'nope' is unknown"),
                          ({"run_cmd": ["x"], "parser": "ms"}, "field 'run_cmd' must be a string"),
                          ({"run_cmd": "x", "parser": "ms", "shell": True}, "unknown field 'shell'")]:
        with pytest.raises(InputError, match=match):
            load_device_config(cfg(**fields))
    r = run_cli("profile", "--space", str(TOY_SPACE), "--backend", "remote", "--device-config",
                str(cfg(run_cmd="x", parser="ms")), "--run-cmd", "y", "--out", str(tmp_path / "t.json"))
    assert r.returncode == 2 and "--device-config cannot be combined with --run-cmd" in r.stderr


def test_billion_laughs_yaml_is_refused_fast_and_small(tmp_path):
    """Nested aliases inside a real key's ``mean`` field: refused within 2 s and 200 MB."""
    lines = shared_reference(*PROXYLESS_YAML).read_text().splitlines()
    key = lines[0].rstrip(":")
    bomb = [f"{key}:", "  count: 1", "  var: 0.1", "  mean: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    bomb += [f"  m{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(bomb) + "\n")
    probe = ("import resource, sys, time\n"
             "from hwnas.errors import InputError\n"
             "from hwnas.latency.importers import import_table\n"
             "rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "t = time.perf_counter()\n"
             "try:\n    import_table('proxyless', sys.argv[1])\nexcept InputError as exc:\n    msg = str(exc)\n"
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0, msg)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seconds, rss_kib, msg = r.stdout.split(" ", 2)
    assert float(seconds) < 2.0 and int(rss_kib) < 200 * 1024  # peak growth while parsing, KiB
    assert "anchors and aliases are not allowed" in msg and len(msg) < 300


def test_real_published_tables_still_import():
    from hwnas.latency.importers import import_table

    assert len(import_table("proxyless", shared_reference(*PROXYLESS_YAML))) > 50


def test_inputs_are_size_limited_and_bad_values_quoted_short(tmp_path):
    from hwnas.safeio import read_bounded_bytes, short

    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(InputError, match="larger than the limit"):
        read_bounded_bytes(big, what="latency table", limit=1024)
    assert len(short("x" * 10_000)) < 70 and short([[1]] * 100) == "<list of 100 items>"
    t = tmp_path / "t.json"
    t.write_text(json.dumps({"format": "hwnas.latency_table/1", "device": {"backend": "ort-cpu"},
                             "entries": {"k": {"median_ms": "9" * 100_000}}}))
    with pytest.raises(InputError) as exc:
        LatencyTable.load(t)
    assert len(str(exc.value)) < 250


def test_a_space_named_in_a_file_is_never_a_path(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(TOY_SPACE.read_text())
    arch = tmp_path / "a.json"
    arch.write_text(json.dumps({"space": str(other.with_suffix("")), "choices": {}}))
    r = run_cli("arch", "show", "--arch", str(arch))
    assert r.returncode == 2 and "must be a plain name" in r.stderr
    arch.write_text(json.dumps({"space": "../search_spaces/proxyless", "choices": {}}))
    r = run_cli("arch", "show", "--arch", str(arch))
    assert r.returncode == 2 and "must be a plain name" in r.stderr


def test_an_arch_file_of_another_space_names_the_space(tmp_path):
    p = tmp_path / "p.json"
    assert run_cli("arch", "show", "--space", "proxyless", "--preset", "proxyless_mobile_ops",
                   "--out", str(p)).returncode == 0
    r = run_cli("arch", "show", "--space", "mobilenetv2", "--arch", str(p))
    assert r.returncode == 2 and "is for space 'proxyless', not 'mobilenetv2'" in r.stderr
    raw = json.loads(p.read_text())
    p.write_text(json.dumps({**raw, "space": "mobilenetv2"}))  # relabeled, but proxyless choices
    r = run_cli("arch", "show", "--arch", str(p))
    assert r.returncode == 2 and "choices are for space 'proxyless', not 'mobilenetv2'" in r.stderr


def test_export_measures_a_remote_table_only_with_the_users_device_config(evil_table, tmp_path):
    path, marker = evil_table
    fake = Path(__file__).resolve().parents[1] / "tools" / "fake_ort_perf_test.py"
    cfg = tmp_path / "device.json"
    cfg.write_text(json.dumps({"run_cmd": f"{sys.executable} {fake} -r 3 {{model}}", "parser": "ort-perf-test"}))
    r = run_cli("export", "--arch", str(_arch_file(tmp_path)), "--space", str(TOY_SPACE), "--table", str(path),
                "--device-config", str(cfg), "--out", str(tmp_path / "ex"), "--repeats", "2", "--warmup", "0",
                "--no-progress", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["measured_latency_ms"] > 0
    assert r.stderr.startswith("hwnas: remote device commands (from --device-config") and not marker.exists()
