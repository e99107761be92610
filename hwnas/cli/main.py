"""Entry point of the ``hwnas`` console script.

Every command returns a ``Report``: a JSON-able dict (printed as one object with ``--json``) and a
human text. Exit status: 0 success, 2 bad input (``InputError``, argparse errors), 1 anything else.

An argparse error is one line (``hwnas: error: ...`` and a ``--help`` hint), not a usage block.
Python warnings raised while a command runs (e.g. torch ``UserWarning``) are collected and printed
after hwnas's own result or error line, once each, so ``hwnas: error:`` is always the first line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from hwnas.errors import IgnoredFieldWarning, InputError

Setup = Callable[[argparse.ArgumentParser], None]

#: "group sub" or "name" → (help, setup). ``setup`` adds arguments to the command's own parser and
#: sets ``func`` (args → Report) with ``parser.set_defaults``.
COMMANDS: dict[str, tuple[str, Setup]] = {}


def command(name: str, *, help: str) -> Callable[[Setup], Setup]:  # noqa: A002 - argparse's word
    """Registers a command: ``@command("latency predict", help=...)`` on its parser setup."""

    def deco(setup: Setup) -> Setup:
        COMMANDS[name] = (help, setup)
        return setup

    return deco


@dataclass(frozen=True)
class Report:
    """A command's result: ``data`` for ``--json``, ``text`` for people."""

    data: dict[str, Any]
    text: str


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def _load_commands() -> None:
    """Imports every ``hwnas/cli/*_cmd.py`` module; each registers its commands with ``@command``."""
    import hwnas.cli as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"hwnas.cli.{info.name}")


GROUP_HELP = {
    "arch": "describe and import architectures",
    "latency": "import latency tables, predict and validate latency",
    "supernet": "check a supernet's ranking against stand-alone training",
}


#: Most distinct warnings kept for printing after a command.
MAX_WARNINGS = 20


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: the message and a ``--help`` hint (exit 2)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        text = " ".join(message.split())
        self.exit(2, f"hwnas: error: {text[:300]} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = Parser(prog="hwnas", description="Hardware-aware neural architecture search.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    groups: dict[str, Any] = {}
    for name in sorted(COMMANDS):
        help_text, setup = COMMANDS[name]
        group, _, leaf = name.partition(" ")
        if leaf:
            if group not in groups:
                gp = sub.add_parser(group, help=GROUP_HELP.get(group, group))
                groups[group] = gp.add_subparsers(dest=f"{group}_command", required=True, metavar="SUBCOMMAND",
                                                  parser_class=Parser)
            p = groups[group].add_parser(leaf, help=help_text, description=help_text)
        else:
            p = sub.add_parser(group, help=help_text, description=help_text)
        setup(p)
    return parser


def _version() -> str:
    from hwnas import __version__

    return f"hwnas {__version__}"


def _format_warning(w: warnings.WarningMessage) -> str:
    if issubclass(w.category, IgnoredFieldWarning):
        return f"hwnas: warning: {w.message}"
    return f"warning: {w.category.__name__}: {' '.join(str(w.message).split())[:300]}"


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs the command, prints its report; returns the exit status.

    Under ``torchrun`` only rank 0 prints the report; every process prints its own errors and
    leaves the process group at the end (``hwnas.train.distributed``).
    """
    if os.environ.get("RANK", "0") != "0":  # torchrun: progress bars of rank 0 only (tqdm reads it on import)
        os.environ["TQDM_DISABLE"] = "1"
    from hwnas.train.distributed import is_main_process, shutdown

    parser = build_parser()
    args = parser.parse_args(argv)
    several = "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun, N > 1
    if several and not getattr(args, "data_parallel", False):
        print("hwnas: error: this command runs on one process; start it without torchrun (torchrun serves "
              "hwnas search, hwnas train and hwnas supernet rank).", file=sys.stderr)
        return 2
    collected: dict[str, None] = {}  # formatted warning → None, in order of first appearance

    def keep(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' hook
        text = _format_warning(warnings.WarningMessage(message, category, filename, lineno))
        if len(collected) < MAX_WARNINGS:
            collected[text] = None

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = keep
        try:
            status, report = _run(args)
        finally:
            main_process = is_main_process()
            shutdown()
    if status == 0 and main_process:
        if getattr(args, "json", False):
            print(json.dumps(report.data))
        elif report.text:
            print(report.text)
    for text in collected if main_process else ():
        print(text, file=sys.stderr)
    return status


def _run(args: argparse.Namespace) -> tuple[int, Report | None]:
    """Runs the command; prints its error line (stderr) on failure; returns (status, report)."""
    try:
        return 0, args.func(args)
    except InputError as exc:
        print(f"hwnas: error: {exc}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130, None
    except Exception as exc:  # noqa: BLE001 - the CLI boundary reports every failure as exit 1
        if os.environ.get("HWNAS_DEBUG"):
            traceback.print_exc()
        print(f"hwnas: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1, None


if __name__ == "__main__":
    sys.exit(main())
