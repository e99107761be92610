"""``remote`` backend: phones and boards reached by user-given command templates.

hwnas writes one ONNX file per model (per block when profiling), runs ``--push-cmd`` once per file
(e.g. ``adb push {model} /data/local/tmp/``) and ``--run-cmd`` once per sample (e.g.
``adb shell /data/local/tmp/onnxruntime_perf_test -r 50 /data/local/tmp/{name}``); a parser
(``hwnas.profile.parsers``) reads the tool's average time per inference from the output. One
sample is therefore the tool's own average over its runs; the profiler interleaves the samples of
all blocks as for local backends.

The templates come only from the user (``--push-cmd/--run-cmd/--info-cmd`` or ``--device-config``,
see ``hwnas.profile.device_config``), never from a latency table.

Template placeholders: ``{model}`` local path of the ONNX file, ``{name}`` its file name, ``{stem}``
the name without ``.onnx``, ``{dir}`` its local folder and ``{threads}``. **No shell**: a template
is split into arguments with ``shlex.split`` first (POSIX quoting rules), then the placeholders are
filled in inside each argument, and the argument list runs directly (``subprocess.run(argv)``). A
placeholder value therefore stays one argument and can never inject a command, whatever it
contains; ``{name}`` and ``{stem}`` are additionally restricted to letters, digits, ``.``, ``_`` and
``-`` because tools such as ``adb shell`` hand them on to the device's shell. To chain steps (convert
to ``.tflite``, push, run), write a script and call it (``./bench.sh {model}``), or pass the model as
an argument of an explicit shell: ``sh -c 'adb push "$1" /data/local/tmp/ && adb shell ...' sh {model}``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Sequence

import torch

from hwnas.errors import InputError
from hwnas.profile.backend import Backend, Runner, onnx_versions, register_backend
from hwnas.profile.onnx_io import export_onnx
from hwnas.profile.parsers import get_parser
from hwnas.safeio import short

PLACEHOLDERS = ("model", "name", "stem", "dir", "threads")
#: Seconds one push or run command may take before it counts as failed.
COMMAND_TIMEOUT_S = 600.0
#: ``{name}`` / ``{stem}`` values: safe in a remote shell too.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def render(template: str, *, flag: str, values: dict[str, str]) -> list[str]:
    """The argument list of a command template: split first, then placeholders filled per argument.

    Raises:
        InputError: naming the flag, for unknown placeholders, bad braces or unbalanced quotes.
    """
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise InputError(f"{flag} is not a valid command template ({exc}).") from None
    if not words:
        raise InputError(f"{flag} is empty.")
    try:
        return [w.format(**values) for w in words]
    except KeyError as exc:
        raise InputError(f"{flag} uses the unknown placeholder {{{str(exc.args[0])[:40]}}} "
                         f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}).") from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise InputError(f"{flag} is not a valid command template ({exc}); write literal braces as {{{{ }}}}.") from None


def run_command(argv: list[str], *, what: str) -> str:
    """Runs ``argv`` without a shell; returns stdout + stderr, raising ``RuntimeError`` on failure."""
    shown = shlex.join(argv)
    try:
        r = subprocess.run(argv, shell=False, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish within {COMMAND_TIMEOUT_S:.0f} s: {shown}") from None
    except OSError as exc:
        raise RuntimeError(f"{what} could not start ({exc.strerror or exc}): {shown}") from None
    out = (r.stdout or "") + "\n" + (r.stderr or "")
    if r.returncode != 0:
        raise RuntimeError(f"{what} exited with status {r.returncode}: {shown}\n{out.strip()[-800:]}")
    return out


class _RemoteRunner(Runner):
    def __init__(self, backend: "RemoteBackend", path: Path, name: str) -> None:
        c = backend.config
        values = backend.template_values(path)
        if c.push_cmd:
            run_command(render(c.push_cmd, flag="--push-cmd", values=values), what=f"--push-cmd for {name}")
        self.cmd = render(c.run_cmd, flag="--run-cmd", values=values)
        self.parser_name = c.parser
        self.parse = get_parser(c.parser)
        self.name = name

    def run_once(self) -> float:
        out = run_command(self.cmd, what=f"--run-cmd for {self.name}")
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
        """Placeholder values of one model file (each fills part of one argument; no quoting needed)."""
        path = Path(path)
        if not _SAFE_NAME.fullmatch(path.name):
            raise InputError(f"model file name {short(path.name)} must use only letters, digits, '.', '_' and '-' "
                             f"to be passed to a remote device.")
        return {"model": str(path), "name": path.name, "stem": path.stem, "dir": str(path.parent),
                "threads": str(self.config.threads)}

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
            argv = render(self.config.info_cmd, flag="--info-cmd", values=self.template_values(Path("/tmp/x.onnx")))
            return " ".join(run_command(argv, what="--info-cmd").split())[:200]
        return "unknown (remote device; pass --info-cmd to record it)"

    def prepare(self, module: torch.nn.Module, input_shape: Sequence[int], *, workdir: Path, name: str) -> Runner:
        path = export_onnx(module, input_shape, Path(workdir) / f"{name}.onnx")
        return self.prepare_onnx(path, input_shape, name=name)

    def prepare_onnx(self, path: Path, input_shape: Sequence[int], *, name: str) -> Runner:
        return _RemoteRunner(self, Path(path), name)

