"""Remote-device commands come from the user, never from a file hwnas reads as data.

A latency table records *what* measured it (backend, threads, batch, dtype, parser, device serial,
host, versions), never a command. To measure on a ``remote`` device, the user gives the command
templates on the command line (``--push-cmd``, ``--run-cmd``, ``--info-cmd``, ``--parser``) or in
a device-config file they name explicitly (``--device-config FILE``)::

    {"format": "hwnas.device_config/1",
     "push_cmd": "adb -s R58M12 push {model} /data/local/tmp/",
     "run_cmd": "adb -s R58M12 shell /data/local/tmp/onnxruntime_perf_test -r 50 /data/local/tmp/{name}",
     "info_cmd": "adb -s R58M12 shell getprop ro.soc.model",
     "parser": "ort-perf-test",
     "serial": "R58M12"}

``run_cmd`` and ``parser`` are required; ``push_cmd``, ``info_cmd``, ``serial`` and ``format`` are
optional; any other field is refused. hwnas prints the commands it will run on stderr.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.errors import InputError
from hwnas.jsonio import read_json
from hwnas.safeio import short

FORMAT = "hwnas.device_config/1"
#: Longest accepted command template, characters.
MAX_TEMPLATE_CHARS = 4096
#: Fields of a device-config file: name → required.
FIELDS = {"format": False, "push_cmd": False, "run_cmd": True, "info_cmd": False, "parser": True, "serial": False}


@dataclass(frozen=True)
class RemoteCommands:
    """Command templates of a ``remote`` device, as the user gave them.

    Attributes:
        run_cmd: Run once per sample; prints the tool's timing.
        parser: Output parser name (``hwnas.profile.parsers``).
        push_cmd: Run once per model (may be empty).
        info_cmd: Prints the device's processor name (may be empty).
        serial: The device's serial number, recorded in the table header (may be empty).
        source: Where the commands came from, for messages (``--device-config FILE`` or ``command line``).
    """

    run_cmd: str
    parser: str
    push_cmd: str = ""
    info_cmd: str = ""
    serial: str = ""
    source: str = "command line"

    def describe(self) -> str:
        """The commands hwnas will run, one line each (for stderr)."""
        lines = [f"hwnas: remote device commands (from {self.source}), run without a shell:"]
        for label, cmd in (("push", self.push_cmd), ("run", self.run_cmd), ("info", self.info_cmd)):
            if cmd:
                lines.append(f"hwnas:   {label}: {cmd}")
        return "\n".join(lines)


def _string(raw: dict[str, Any], key: str, *, where: str) -> str:
    v = raw.get(key, "")
    if not isinstance(v, str):
        raise InputError(f"{where}: field {key!r} must be a string, got {short(v)}.")
    if len(v) > MAX_TEMPLATE_CHARS or "\x00" in v:
        raise InputError(f"{where}: field {key!r} must be at most {MAX_TEMPLATE_CHARS} characters without NUL bytes.")
    if FIELDS[key] and not v.strip():
        raise InputError(f"{where}: field {key!r} is required and must not be empty.")
    return v


def parse_device_config(raw: Any, *, where: str) -> RemoteCommands:
    """Validates a device-config object strictly.

    Raises:
        InputError: one sentence naming ``where`` and the field.
    """
    from hwnas.profile.parsers import get_parser

    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a JSON object with 'run_cmd' and 'parser'.")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise InputError(f"{where}: unknown field {short(unknown[0])} (allowed: {', '.join(FIELDS)}).")
    if raw.get("format", FORMAT) != FORMAT:
        raise InputError(f"{where}: field 'format' must be {FORMAT!r}, got {short(raw.get('format'))}.")
    values = {k: _string(raw, k, where=where) for k in FIELDS if k != "format"}
    try:
        get_parser(values["parser"])
    except InputError:
        raise InputError(f"{where}: field 'parser' {short(values['parser'])} is unknown.") from None
    return RemoteCommands(**values, source=where)


def load_device_config(path: str | Path) -> RemoteCommands:
    """Reads and validates a ``--device-config`` file."""
    where = f"--device-config {path}"
    return parse_device_config(read_json(path, what="--device-config file"), where=where)


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device-config`` and the template flags (``--push-cmd``, ``--run-cmd``, ``--info-cmd``, ``--parser``)."""
    r = p.add_argument_group("remote device (a phone or board over adb/ssh; commands only from here)")
    r.add_argument("--device-config", metavar="FILE", action="append",
                   help="JSON file with push_cmd, run_cmd, info_cmd, parser, serial (see README); hwnas profile and "
                        "hwnas latency measure take it once per device to measure on several devices at once")
    r.add_argument("--push-cmd", default="", help="run once per model, e.g. 'adb push {model} /data/local/tmp/'")
    r.add_argument("--run-cmd", default="",
                   help="run once per sample, e.g. 'adb shell /data/local/tmp/onnxruntime_perf_test -r 50 "
                        "/data/local/tmp/{name}'")
    r.add_argument("--info-cmd", default="", help="command whose output names the device's processor")
    r.add_argument("--parser", default="", help="output parser: ort-perf-test, tflite-benchmark or ms")


def add_fleet_args(p: argparse.ArgumentParser) -> None:
    """``--fleet-anchors``: entries every device of a fleet measures (``hwnas.profile.fleet``)."""
    p.add_argument("--fleet-anchors", type=int, default=4, metavar="K",
                   help="with --device-config given once per device (a fleet): the first K entries are measured on "
                        "every device to report how the devices disagree (default 4; 0: none)")


def commands_from_args(args: argparse.Namespace, *, announce: bool = True) -> RemoteCommands | None:
    """The remote commands the user gave (``--device-config`` or the flags), or None.

    Args:
        args: Parsed arguments of a command that called ``add_device_args``.
        announce: Print the commands on stderr.

    Raises:
        InputError: for a bad device-config file, both a file and flags, flags without ``--run-cmd``,
            or several ``--device-config`` (a fleet) where one device is measured.
    """
    devices = device_commands_from_args(args, announce=announce)
    if len(devices) > 1:
        raise InputError(f"--device-config was given {len(devices)} times, but this command measures on one device; "
                         f"several devices at once (a fleet) serve hwnas profile and hwnas latency measure.")
    return devices[0] if devices else None


def device_commands_from_args(args: argparse.Namespace, *, announce: bool = True) -> list[RemoteCommands]:
    """Every device's commands: one per ``--device-config`` (a fleet), or the flags' device; [] for none.

    Raises:
        InputError: as ``commands_from_args``, but several files are allowed.
    """
    flags = {"push_cmd": args.push_cmd, "run_cmd": args.run_cmd, "info_cmd": args.info_cmd,
             "parser": args.parser}
    given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v]
    if args.device_config:
        if given:
            raise InputError(f"--device-config cannot be combined with {given[0]}; put the field in the file.")
        devices = [load_device_config(path) for path in args.device_config]
    elif given:
        if not flags["run_cmd"]:
            raise InputError(f"{given[0]} needs --run-cmd (the command that runs one model on the device).")
        if not flags["parser"]:
            raise InputError("--run-cmd needs --parser (how to read the tool's output, e.g. ort-perf-test).")
        devices = [parse_device_config(flags, where="command line")]
    else:
        return []
    if announce:
        for commands in devices:
            print(commands.describe(), file=sys.stderr)
    return devices
