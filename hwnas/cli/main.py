"""Entry point of the ``hwnas`` console script.

Every command returns a ``Report``: a JSON-able dict (printed as one object with ``--json``) and a
human text. Exit status: 0 success, 2 bad input (``InputError``, argparse errors), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from hwnas.errors import InputError

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
}


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(prog="hwnas", description="Hardware-aware neural architecture search.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, Any] = {}
    for name in sorted(COMMANDS):
        help_text, setup = COMMANDS[name]
        group, _, leaf = name.partition(" ")
        if leaf:
            if group not in groups:
                gp = sub.add_parser(group, help=GROUP_HELP.get(group, group))
                groups[group] = gp.add_subparsers(dest=f"{group}_command", required=True, metavar="SUBCOMMAND")
            p = groups[group].add_parser(leaf, help=help_text, description=help_text)
        else:
            p = sub.add_parser(group, help=help_text, description=help_text)
        setup(p)
    return parser


def _version() -> str:
    from hwnas import __version__

    return f"hwnas {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, runs the command, prints its report; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report: Report = args.func(args)
    except InputError as exc:
        print(f"hwnas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI boundary reports every failure as exit 1
        if os.environ.get("HWNAS_DEBUG"):
            traceback.print_exc()
        print(f"hwnas: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(json.dumps(report.data))
    elif report.text:
        print(report.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
