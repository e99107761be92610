"""The ``remote`` backend end to end through a stand-in device (tests/tools/fake_ort_perf_test.py runs
each pushed model with ONNX Runtime in its own process and prints onnxruntime_perf_test's output),
the output parsers on the tools' real formats, and kill -9 + --resume of a profile run."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hwnas.errors import InputError
from hwnas.latency.table import LatencyTable
from hwnas.profile.backend import BackendConfig
from hwnas.profile.device_config import RemoteCommands
from hwnas.profile.measure import measure_module, measure_onnx_file
from hwnas.profile.parsers import get_parser
from hwnas.profile.profiler import file_id
from hwnas.space.blocks import op_key
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE, cli_json, run_cli

FAKE = Path(__file__).resolve().parents[1] / "tools" / "fake_ort_perf_test.py"

# Real outputs: onnxruntime_perf_test (1.1x and the newer "cost total" line), TFLite benchmark_model.
ORT_OLD = """Session creation time cost: 2.74716 s
First inference time cost: 85 ms
Total inference time cost: 6.22935 s
Total inference requests: 100
Average inference time cost: 62.2935 ms
Total inference run time: 6.23146 s
P50 Latency: 0.0603562 s
"""
ORT_NEW = """Setting intra_op_num_threads to 1
Total inference requests: 5
Average inference time cost total: 98.961997 ms
Total inference run time: 0.494854 s
"""
TFLITE = """INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602
INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415
INFO: Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
"""
TFLITE_OLD = """Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=249042 curr=250889 min=247067 max=254474 avg=249684 std=1442
"""


def test_parsers_read_the_tools_average_in_ms():
    assert get_parser("ort-perf-test")(ORT_OLD) == pytest.approx(62.2935)
    assert get_parser("ort-perf-test")(ORT_NEW) == pytest.approx(98.961997)
    assert get_parser("tflite-benchmark")(TFLITE) == pytest.approx(1240.27)  # 1.24027e6 us
    assert get_parser("tflite-benchmark")(TFLITE_OLD) == pytest.approx(249.684)
    assert get_parser("ms")("warm-up done\nlatency 3.25 ms\n") == pytest.approx(3.25)
    with pytest.raises(ValueError):
        get_parser("ort-perf-test")(TFLITE)
    with pytest.raises(InputError, match="--parser 'nope' is unknown"):
        get_parser("nope")


def _remote_args(device_dir: Path, runs: int = 20, sleep: float = 0.0) -> list[str]:
    run = f"{sys.executable} {FAKE} -r {runs} -x {{threads}} {device_dir}/{{name}}"
    if sleep:  # templates run without a shell: a chain needs an explicit one, the model as an argument
        run = f"sh -c 'sleep {sleep} && exec \"$@\"' sh {run}"
    return ["--backend", "remote", "--push-cmd", f"cp {{model}} {device_dir}/", "--run-cmd", run,
            "--parser", "ort-perf-test"]


#: Runs a command, appends its stdout to a log file (argv[1]) and passes the output on: a record of
#: exactly what the stand-in device printed for each run.
TEE = """import subprocess, sys
r = subprocess.run(sys.argv[2:], capture_output=True, text=True)
with open(sys.argv[1], "a") as f:
    f.write(r.stdout)
sys.stdout.write(r.stdout)
sys.stderr.write(r.stderr)
sys.exit(r.returncode)
"""


def test_remote_profile_through_the_stand_in_device(tmp_path):
    dev, logs = tmp_path / "device", tmp_path / "logs"
    dev.mkdir()
    logs.mkdir()
    tee = tmp_path / "tee.py"
    tee.write_text(TEE)
    out = tmp_path / "remote.json"
    run = f"{sys.executable} {tee} {logs}/{{stem}}.log {sys.executable} {FAKE} -r 20 -x {{threads}} {dev}/{{name}}"
    data = cli_json("profile", "--space", str(TOY_SPACE), "--backend", "remote", "--push-cmd", f"cp {{model}} {dev}/",
                    "--run-cmd", run, "--parser", "ort-perf-test", "--repeats", "2", "--warmup", "0",
                    "--remeasure", "0", "--device-name", "stand-in", "--out", str(out))
    table = LatencyTable.load(out)
    sp = load_space(TOY_SPACE)
    assert data["entries"] == 4 and set(table.entries) == {op_key(b) for b in sp.all_blocks()}
    assert len(list(dev.glob("*.onnx"))) == 4  # one pushed ONNX file per block
    # each entry holds what the stand-in printed for that block's file: its two runs' "Average
    # inference time cost" lines (read here with a regex, not with hwnas's parser), in ms
    for key, e in table.entries.items():
        printed = [float(v) for v in re.findall(r"^Average inference time cost: (\S+) ms$",
                                                (logs / f"{file_id(key)}.log").read_text(), re.M)]
        assert len(printed) == 2 and e["count"] == 2, (key, printed)
        assert e["median_ms"] == pytest.approx(statistics.median(printed), rel=1e-9)
        assert e["mean_ms"] == pytest.approx(statistics.mean(printed), rel=1e-9)
        assert 0 < e["median_ms"] < 100
    d = table.device
    assert d["name"] == "stand-in" and d["parser"] == "ort-perf-test"
    assert not {"push_cmd", "run_cmd", "info_cmd"} & set(d)  # a table records what measured it, never commands
    # end-to-end measurement with the table's settings and the user's commands (what latency validation does)
    commands = RemoteCommands(push_cmd=f"cp {{model}} {dev}/", run_cmd=f"{sys.executable} {FAKE} -r 20 {dev}/{{name}}",
                              parser="ort-perf-test")
    e = measure_module(torch.nn.Conv2d(3, 8, 3, padding=1), input_shape=(1, 3, 16, 16),
                       config=BackendConfig.from_header(d, commands=commands), repeats=1, warmup=0)
    assert e["count"] == 1 and 0 < e["median_ms"] < 100


def _identity_onnx(path: Path) -> Path:
    """A one-node ONNX model (Identity, 1x3x8x8), built directly: no exporter needed."""
    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [io[0]], [io[1]])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_remote_bad_templates_and_failures(tmp_path):
    r = run_cli("profile", "--space", str(TOY_SPACE), "--backend", "remote", "--run-cmd", "run {modle}",
                "--parser", "ort-perf-test", "--out", str(tmp_path / "t.json"))
    assert r.returncode == 2 and "--run-cmd uses the unknown placeholder {modle}" in r.stderr
    assert not (tmp_path / "t.json").exists()
    model = _identity_onnx(tmp_path / "id.onnx")
    with pytest.raises(InputError, match="needs --parser"):
        measure_onnx_file(model, input_shape=(1, 3, 8, 8), config=BackendConfig(backend="remote", run_cmd="x {name}"))
    with pytest.raises(InputError, match="--push-cmd is not a valid command template"):
        measure_onnx_file(model, input_shape=(1, 3, 8, 8),
                          config=BackendConfig(backend="remote", run_cmd="x", push_cmd="cp {model", parser="ms"))
    cfg = BackendConfig(backend="remote", run_cmd="echo no timing here", parser="ort-perf-test")
    with pytest.raises(RuntimeError, match="found no timing in the output of --run-cmd"):
        measure_onnx_file(model, input_shape=(1, 3, 8, 8), config=cfg, repeats=1, warmup=0)
    cfg = BackendConfig(backend="remote", run_cmd="sh -c 'exit 3'", parser="ort-perf-test")
    with pytest.raises(RuntimeError, match="exited with status 3"):
        measure_onnx_file(model, input_shape=(1, 3, 8, 8), config=cfg, repeats=1, warmup=0)
    # a custom tool printing ms, with every placeholder filled in (an explicit shell, values as arguments)
    cfg = BackendConfig(backend="remote", threads=3, parser="ms",
                        run_cmd="sh -c 'echo \"$1\" \"$2\" \"$3\" && test -f \"$4\" && test -d \"$5\" && echo 2.5' "
                                "sh {name} {stem} {threads} {model} {dir}")
    e = measure_onnx_file(model, input_shape=(1, 3, 8, 8), config=cfg, repeats=2, warmup=0)
    assert e["median_ms"] == 2.5 and e["count"] == 2


def test_placeholder_values_never_reach_a_shell(tmp_path):
    """A template is split into arguments first: a model path full of shell syntax stays one argument."""
    evil_dir = tmp_path / "a b;touch PWNED;$(touch PWNED2)"
    evil_dir.mkdir()
    model = _identity_onnx(evil_dir / "id.onnx")
    cfg = BackendConfig(backend="remote", parser="ms", run_cmd="test -f {model}", push_cmd="echo {dir} 1.0")
    # `test -f` succeeds on the one-argument path and prints nothing: no timing, and nothing else ran
    with pytest.raises(RuntimeError, match="found no timing"):
        measure_onnx_file(model, input_shape=(1, 3, 8, 8), config=cfg, repeats=1, warmup=0)
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    bad = evil_dir / "x;rm.onnx"
    bad.write_bytes(model.read_bytes())
    with pytest.raises(InputError, match="must use only letters"):
        measure_onnx_file(bad, input_shape=(1, 3, 8, 8), config=BackendConfig(backend="remote", parser="ms",
                                                                              run_cmd="echo {name} 1"))


@pytest.mark.slow
def test_kill_9_mid_profile_then_resume(tmp_path):
    """A profile killed with SIGKILL leaves a valid table of the finished chunks; --resume measures
    only the rest, re-exports nothing and keeps the finished entries' numbers."""
    dev = tmp_path / "device"
    dev.mkdir()
    out = tmp_path / "t.json"
    args = ["profile", "--space", str(TOY_SPACE), *_remote_args(dev, runs=5, sleep=0.3), "--repeats", "2",
            "--warmup", "0", "--remeasure", "0", "--chunk", "1", "--out", str(out)]
    exe = Path(sys.executable).parent / "hwnas"
    proc = subprocess.Popen([str(exe), *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait for the first flushed chunk
            if out.exists() and json.loads(out.read_text())["entries"]:
                break
            assert proc.poll() is None, "the profile ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    partial = LatencyTable.load(out)  # parses: the file was never half-written
    assert 1 <= len(partial) < 4
    assert not list(tmp_path.glob(".t.json.*"))  # no stray temp files of the atomic writes
    data = cli_json(*args, "--resume")
    assert data["skipped"] == len(partial) and data["measured"] == 4 - len(partial)
    assert data["exported"] == 0  # every block was exported before the kill (cached in t.json.work)
    final = LatencyTable.load(out)
    assert len(final) == 4 and all(final.entries[k] == v for k, v in partial.entries.items())
    assert not (tmp_path / "t.json.work").exists()
