"""``remote`` backend: phones and boards reached by user-given shell command templates.

hwnas writes one ONNX file per model (per block when profiling), runs ``--push-cmd`` once per file
(e.g. ``adb push {model} /data/local/tmp/``) and ``--run-cmd`` once per sample (e.g.
``adb shell /data/local/tmp/onnxruntime_perf_test -r 50 /data/local/tmp/{name}``); a parser
(``hwnas.profile.parsers``) reads the tool's average time per inference from the output. One
sample is therefore the tool's own average over its runs; the profiler interleaves the samples of
all blocks as for local backends.

Template placeholders: ``{model}`` local path of the ONNX file (shell-quoted), ``{name}`` its file
name, ``{stem}`` the name without ``.onnx``, ``{dir}`` its local folder (shell-quoted) and
``{threads}``. Commands run through the shell (``/bin/sh -c``), so they may chain steps (convert
to ``.tflite``, push, run) with ``&&``.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Sequence

import torch

from hwnas.errors import InputError
from hwnas.onnx_io import export_onnx
from hwnas.profile.backend import Backend, Runner, onnx_versions, register_backend
from hwnas.profile.parsers import get_parser

PLACEHOLDERS = ("model", "name", "stem", "dir", "threads")
#: Seconds one push or run command may take before it counts as failed.
COMMAND_TIMEOUT_S = 600.0


def render(template: str, *, flag: str, values: dict[str, str]) -> str:
    """Fills a command template; unknown placeholders raise ``InputError`` naming the flag."""
    try:
        return template.format(**values)
    except KeyError as exc:
        raise InputError(f"{flag} uses the unknown placeholder {{{exc.args[0]}}} "
                         f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}).") from None
    except (ValueError, IndexError) as exc:
        raise InputError(f"{flag} is not a valid command template ({exc}); write literal braces as {{{{ }}}}.") from None


def run_shell(cmd: str, *, what: str) -> str:
    """Runs ``cmd`` through the shell; returns stdout + stderr, raising ``RuntimeError`` on failure."""
    try:
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish within {COMMAND_TIMEOUT_S:.0f} s: {cmd}") from None
    out = (r.stdout or "") + "\n" + (r.stderr or "")
    if r.returncode != 0:
        raise RuntimeError(f"{what} exited with status {r.returncode}: {cmd}\n{out.strip()[-800:]}")
    return out


class _RemoteRunner(Runner):
    def __init__(self, backend: "RemoteBackend", path: Path, name: str) -> None:
        c = backend.config
        values = backend.template_values(path)
        if c.push_cmd:
            run_shell(render(c.push_cmd, flag="--push-cmd", values=values), what=f"--push-cmd for {name}")
        self.cmd = render(c.run_cmd, flag="--run-cmd", values=values)
        self.parser_name = c.parser
        self.parse = get_parser(c.parser)
        self.name = name

    def run_once(self) -> float:
        out = run_shell(self.cmd, what=f"--run-cmd for {self.name}")
        try:
            return self.parse(out)  # ms, the tool's average per inference
        except ValueError as exc:
            raise RuntimeError(f"--parser {self.parser_name} found no timing in the output of --run-cmd "
                               f"for {self.name} ({exc}):\n{out.strip()[-800:]}") from None


@register_backend("remote")
class RemoteBackend(Backend):
    """A device driven by ``--push-cmd`` / ``--run-cmd`` templates and an output ``--parser``."""

    runs_onnx = True
    averages_runs = False  # one run is the tool's own average over its runs

    def template_values(self, path: Path) -> dict[str, str]:
        path = Path(path)
        return {"model": shlex.quote(str(path)), "name": path.name, "stem": path.stem,
                "dir": shlex.quote(str(path.parent)), "threads": str(self.config.threads)}

    def check_available(self) -> None:
        c = self.config
        if not c.run_cmd:
            raise InputError("--backend remote needs --run-cmd (the command that runs one model on the device).")
        if not c.parser:
            raise InputError("--backend remote needs --parser (how to read the tool's output, e.g. ort-perf-test).")
        get_parser(c.parser)
        dummy = self.template_values(Path("/tmp/x.onnx"))
        render(c.run_cmd, flag="--run-cmd", values=dummy)
        if c.push_cmd:
            render(c.push_cmd, flag="--push-cmd", values=dummy)

    def versions(self) -> dict[str, str]:
        return onnx_versions()

    def processor(self) -> str:
        if self.config.info_cmd:
            return " ".join(run_shell(self.config.info_cmd, what="--info-cmd").split())[:200]
        return "unknown (remote device; pass --info-cmd to record it)"

    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        path = export_onnx(module, input_shape, Path(workdir) / f"{name}.onnx")
        return self.prepare_onnx(path, input_shape, name=name)

    def prepare_onnx(self, path: Path, input_shape: Sequence[int], *, name: str) -> Runner:
        return _RemoteRunner(self, Path(path), name)

