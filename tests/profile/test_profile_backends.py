"""The local backends for real: ort-cpu and torch-cpu through the CLI and end-to-end measurement,
cuda's no-GPU refusal (and a real run where a GPU exists), measure_onnx_file."""

from __future__ import annotations

import pytest
import torch

from hwnas.errors import InputError
from hwnas.latency.table import LatencyTable
from hwnas.profile.backend import BackendConfig
from hwnas.profile.measure import measure_module, measure_onnx_file
from hwnas.profile.steady import ESTIMATOR
from hwnas.profile.onnx_io import export_onnx
from hwnas.profile.torch_cpu import torch_threads
from hwnas.space.blocks import op_key
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE, cli_json, run_cli

ENTRY_FIELDS = {"median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "count", "steady_ms", "spread_pct"}


def _check_table(path, *, backend, repeats):
    table = LatencyTable.load(path)
    sp = load_space(TOY_SPACE)
    assert set(table.entries) == {op_key(b) for b in sp.all_blocks()}
    for e in table.entries.values():
        assert set(e) == ENTRY_FIELDS and e["count"] == repeats
        assert 0 < e["p10_ms"] <= e["median_ms"] <= e["p90_ms"] < 1000
        assert 0 < e["steady_ms"] <= e["p90_ms"] and e["spread_pct"] >= 0
    d = table.device
    assert d["backend"] == backend and d["threads"] == 1 and d["batch"] == 1 and d["dtype"] == "float32"
    assert d["resolution"] == 8 and d["spaces"] == ["toy"] and d["host"] and d["processor"]
    return table


def test_ort_cpu_profile_cli_and_prediction_from_the_table(tmp_path):
    out = tmp_path / "ort.json"
    data = cli_json("profile", "--space", str(TOY_SPACE), "--backend", "ort-cpu", "--threads", "1",
                    "--repeats", "5", "--warmup", "2", "--remeasure", "0", "--out", str(out))
    assert {"entries", "seconds", "out"} <= set(data)
    assert data["entries"] == 4 and data["out"] == str(out) and data["exported"] == 4
    table = _check_table(out, backend="ort-cpu", repeats=5)
    assert table.device["versions"]["onnxruntime"] and table.device["versions"]["opset"] == "18"
    # the big preset: stem + l1 (k5) + l2 (k3) + l3 (k5, same key as l1) + logits, from the table alone
    sp = load_space(TOY_SPACE)
    total, _ = table.lookup_sum(sp.resolve(sp.preset("big")))
    e = table.entries
    k3 = "expanded_conv-input:8x8x8-output:8x8x8-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0"
    k5 = k3.replace("kernel:3", "kernel:5")
    # the latency model sums the steady figures
    want = e["Conv-input:8x8x3-output:8x8x8"]["steady_ms"] + 2 * e[k5]["steady_ms"] + e[k3]["steady_ms"] \
        + e["Logits-input:8x8x8-output:4"]["steady_ms"]
    assert total == pytest.approx(want)


def test_torch_cpu_profile_cli_channels_last(tmp_path, capsys, monkeypatch):
    out = tmp_path / "torch.json"
    data = cli_json("profile", "--space", str(TOY_SPACE), "--backend", "torch-cpu", "--channels-last",
                    "--repeats", "4", "--warmup", "1", "--out", str(out))
    assert data["entries"] == 4 and data["exported"] == 0  # eager: nothing exported
    table = _check_table(out, backend="torch-cpu", repeats=4)
    assert table.device["channels_last"] is True
    # the same command in process, with a spy on every timed run: what the timed module is given and
    # holds is NHWC (channels_last) with the flag, and NCHW without it
    from hwnas.cli.main import main
    from hwnas.profile import torch_cpu

    seen: list[tuple[bool, bool, bool | None]] = []
    timed = torch_cpu._TorchRunner.run_once

    def spy(self):
        weights = [p for p in self.module.parameters() if p.dim() == 4]
        seen.append((self.x.is_contiguous(memory_format=torch.channels_last), self.x.is_contiguous(),
                     all(p.is_contiguous(memory_format=torch.channels_last) for p in weights) if weights else None))
        return timed(self)

    monkeypatch.setattr(torch_cpu._TorchRunner, "run_once", spy)
    for flag, name in ((["--channels-last"], "nhwc.json"), ([], "nchw.json")):
        seen.clear()
        code = main(["profile", "--space", str(TOY_SPACE), "--backend", "torch-cpu", *flag, "--repeats", "4",
                     "--warmup", "1", "--remeasure", "0", "--out", str(tmp_path / name), "--json"])
        assert code == 0, capsys.readouterr().err
        assert len(seen) >= 4 * 4  # 4 blocks, 4 timed runs each (and the warm-up)
        if flag:
            assert all(x_nhwc and not x_nchw and w_nhwc in (True, None) for x_nhwc, x_nchw, w_nhwc in seen), seen
            assert sum(w is True for *_, w in seen) >= 3 * 4  # the conv blocks' weights (the classifier has none)
        else:
            assert all(x_nchw and not x_nhwc for x_nhwc, x_nchw, _ in seen), seen
    capsys.readouterr()


def test_cuda_without_gpu_exits_2_with_a_clear_message(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = run_cli("profile", "--space", str(TOY_SPACE), "--backend", "cuda", "--out", str(tmp_path / "c.json"))
    assert r.returncode == 2 and "--backend cuda needs a CUDA GPU" in r.stderr
    assert not (tmp_path / "c.json").exists() and r.stdout == ""
    with pytest.raises(InputError, match="needs a CUDA GPU"):
        measure_module(torch.nn.Conv2d(3, 4, 3), input_shape=(1, 3, 8, 8), config=BackendConfig(backend="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_measures_for_real(dtype):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    shape = (8, 64, 112, 112)  # 7.4 GFLOP: GPU work well above the launch overhead
    e = measure_module(conv, input_shape=shape, config=BackendConfig(backend="cuda", dtype=dtype),
                       repeats=20, warmup=5)
    assert e["count"] == 20 * e["attempts"] and 0 < e["steady_ms"] < 50
    assert next(conv.parameters()).device.type == "cpu"  # the caller's module is left where it was
    # the same conv timed here, independently, with CUDA events around each run (cuDNN autotuned as
    # the backend does): the backend's steady figure is within a factor 2 of the events' median
    ref = _cuda_event_median_ms(conv, shape, dtype=getattr(torch, dtype))
    assert 0.5 < e["steady_ms"] / ref < 2.0, (e["steady_ms"], ref)


def _cuda_event_median_ms(module, shape, *, dtype, warmup: int = 10, repeats: int = 50) -> float:
    import copy
    import statistics

    m = copy.deepcopy(module).eval().to(device="cuda", dtype=dtype)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    prev, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, True
    times = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                m(x)
            for _ in range(repeats):
                torch.cuda.synchronize()
                start.record()
                m(x)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
    finally:
        torch.backends.cudnn.benchmark = prev
    return statistics.median(times)


def test_unknown_backend_and_bad_dtype_are_input_errors(tmp_path):
    r = run_cli("profile", "--space", str(TOY_SPACE), "--backend", "tpu", "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "--backend 'tpu' is unknown" in r.stderr
    with pytest.raises(InputError, match="--dtype 'float16' is not supported by backend torch-cpu"):
        measure_module(torch.nn.Identity(), input_shape=(1, 3, 8, 8),
                       config=BackendConfig(backend="torch-cpu", dtype="float16"))


def test_measure_module_and_onnx_file_agree_on_a_real_conv(tmp_path):
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU())
    shape = (1, 16, 32, 32)
    cfg = BackendConfig(backend="ort-cpu", threads=1)
    e_mod = measure_module(conv, input_shape=shape, config=cfg, repeats=15, warmup=3)
    path = export_onnx(conv, shape, tmp_path / "conv.onnx")
    e_file = measure_onnx_file(path, input_shape=shape, config=cfg, repeats=15, warmup=3)
    # 15 runs = 3 rounds of 5; an unstable machine (spread > 15 %) adds one more attempt
    assert e_mod["count"] == 15 * e_mod["attempts"] and e_file["count"] == 15 * e_file["attempts"]
    for e in (e_mod, e_file):  # the table-entry statistics plus the steady estimator's fields
        assert (e["rounds"], e["runs_per_round"]) == (3 * e["attempts"], 5) and e["estimator"] == ESTIMATOR
        assert 0 < e["steady_ms"] <= e["p90_ms"] and e["spread_pct"] >= 0
    # the same graph on the same backend: medians within a factor 2 even on a busy machine
    assert 0.5 < e_mod["median_ms"] / e_file["median_ms"] < 2.0
    e_torch = measure_module(conv, input_shape=shape, config=BackendConfig(backend="torch-cpu"), repeats=5, warmup=1)
    assert e_torch["count"] == 5 * e_torch["attempts"] and e_torch["median_ms"] > 0
    with pytest.raises(InputError, match="cannot time an ONNX file"):
        measure_onnx_file(path, input_shape=shape, config=BackendConfig(backend="torch-cpu"))
    with pytest.raises(InputError, match="does not exist"):
        measure_onnx_file(tmp_path / "nope.onnx", input_shape=shape, config=cfg)


def test_torch_threads_are_restored_after_timing():
    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_backend_config_round_trips_through_the_header():
    """The header records the settings, never the commands; they come back only from the user."""
    from hwnas.profile.device_config import RemoteCommands

    commands = RemoteCommands(push_cmd="adb push {model} /x/", run_cmd="adb shell /x/perf {name}",
                              parser="ort-perf-test", serial="R58")
    c = BackendConfig(backend="remote", threads=2, device_name="pixel7").with_commands(commands)
    h = c.header()
    assert h["name"] == "pixel7" and h["serial"] == "R58" and h["parser"] == "ort-perf-test"
    assert not {"device_name", "push_cmd", "run_cmd", "info_cmd"} & set(h)
    header = {**h, "host": "h", "resolution": 224, "spaces": ["x"], "run_cmd": "touch PWNED"}
    assert BackendConfig.from_header(header, commands=commands) == c
    with pytest.raises(InputError, match="never runs commands from a file"):
        BackendConfig.from_header(header, commands=None)
    local = BackendConfig.from_header({"backend": "ort-cpu", "threads": 1, "run_cmd": "x"}, commands=None)
    assert local.run_cmd == "" and local.backend == "ort-cpu"


def test_grouped_export_cuts_out_each_block_exactly(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from hwnas.profile.export_cache import export_blocks, export_onnx_group
    from hwnas.profile.profiler import file_id
    from hwnas.space.ops import make_module

    sp = load_space(TOY_SPACE)
    blocks = sp.all_blocks(resolution=12)
    torch.manual_seed(0)
    modules = [make_module(b).eval() for b in blocks]
    shapes = [(1, b.cin, b.hw, b.hw) for b in blocks]
    paths = [tmp_path / f"{i}.onnx" for i in range(len(blocks))]
    export_onnx_group(modules, shapes, paths, scratch=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no scratch left
    for m, s, p in zip(modules, shapes, paths):
        sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        assert len(sess.get_inputs()) == 1 and len(sess.get_outputs()) == 1  # only this block's graph
        x = np.random.default_rng(1).standard_normal(s, dtype=np.float32)
        with torch.no_grad():
            want = m(torch.from_numpy(x)).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-4
    # the cache: a second call exports nothing
    work = tmp_path / "work"
    keyed = {op_key(b): b for b in blocks}
    _, n1 = export_blocks(keyed, work, batch=1, file_id=file_id, progress=False)
    _, n2 = export_blocks(keyed, work, batch=1, file_id=file_id, progress=False)
    assert (n1, n2) == (len(keyed), 0)
