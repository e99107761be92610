"""Every command's outputs are checked before any work (one sentence, exit 2, nothing left behind);
argparse errors and warnings keep ``hwnas: error:`` as the one first line."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pytest

from hwnas.errors import InputError
from tests.conftest import ROOT, SHARED, TOY_SPACE, run_cli

TABLE = ROOT / "latency_tables" / "cpu-ort-1t_r32.json"
YAML = SHARED / "reference" / "latency_tables" / "proxylessnas_pixel1_mobile_trim.yaml"

#: Every command with an output option, its other arguments and the option (OUT is replaced).
OUTPUT_COMMANDS = {
    "arch show": ["arch", "show", "--space", str(TOY_SPACE), "--preset", "small", "--out", "OUT"],
    "arch import": ["arch", "import", "--format", "ofa", str(TOY_SPACE), "--out", "OUT"],
    "latency import": ["latency", "import", "--format", "proxyless", str(YAML), "--out", "OUT"],
    "latency merge": ["latency", "merge", str(TABLE), str(TABLE), "--out", "OUT"],
    "latency validate": ["latency", "validate", "--table", str(TABLE), "--space", "proxyless", "--samples", "1",
                         "--plot", "OUT"],
    "latency validate --measurements": ["latency", "validate", "--table", str(TABLE), "--space", "proxyless",
                                        "--samples", "1", "--measurements", "OUT"],
    "latency calibrate": ["latency", "calibrate", "--table", str(TABLE), "--space", "proxyless", "--samples", "3",
                          "--measurements", "OUT"],
    "latency measure": ["latency", "measure", "--space", "nasbench201", "--archs", "2", "--out", "OUT"],
    "latency fit": ["latency", "fit", "--space", "nasbench201", "--measured", str(TABLE), "--out", "OUT"],
    "profile": ["profile", "--space", str(TOY_SPACE), "--out", "OUT"],
    "search": ["search", "--space", str(TOY_SPACE), "--strategy", "random", "--table", str(TABLE),
               "--latency-ms", "1", "--out", "OUT"],
    "train": ["train", "--space", str(TOY_SPACE), "--preset", "small", "--out", "OUT"],
    "export": ["export", "--space", str(TOY_SPACE), "--preset", "small", "--out", "OUT"],
    "supernet rank": ["supernet", "rank", "--space", str(TOY_SPACE), "--table", str(TABLE), "--out", "OUT"],
    "demo --run": ["demo", "--quick", "--run", "OUT"],
    "demo --export": ["demo", "--quick", "--export", "OUT"],
}


def _commands_with_outputs() -> set[str]:
    """``group sub`` names of every registered command with an output-path option."""
    from hwnas.cli.main import COMMANDS

    found = set()
    for name, (_, setup) in COMMANDS.items():
        p = argparse.ArgumentParser()
        setup(p)
        if {"--out", "--run", "--export", "--plot", "--measurements"} & set(p._option_string_actions):
            found.add(name)
    return found


def test_the_parametrized_list_covers_every_command_with_an_output():
    from hwnas.cli.main import build_parser

    build_parser()  # registers the commands
    assert _commands_with_outputs() == {k.split(" --")[0] for k in OUTPUT_COMMANDS}


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
@pytest.mark.parametrize("name", sorted(OUTPUT_COMMANDS))
def test_an_unwritable_output_is_one_sentence_exit_2_and_nothing_left(name, where, tmp_path, capsys):
    from hwnas.cli.main import main

    blocker = tmp_path / "somefile"
    blocker.write_text("x")
    target = blocker / "x" / "y" if where == "under_a_file" else Path("/proc/hwnas-x/y")
    before = sorted(tmp_path.rglob("*"))
    args = [str(target) if a == "OUT" else a for a in OUTPUT_COMMANDS[name]]
    status = main(args)  # in process: 26 cases, no interpreter start each
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("hwnas: error:") and "cannot be written" in lines[0], err
    assert sorted(tmp_path.rglob("*")) == before and blocker.read_text() == "x"


def test_an_argparse_error_is_one_line_with_a_help_hint(tmp_path):
    r = run_cli("search", "--space", "toy", "--strategy", "random", "--table", "t", "--latency-ms", "1",
                "--out", str(tmp_path / "r"), "--pareto", "0.4,abc")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("hwnas: error: argument --pareto")
    assert "(see hwnas search --help)" in r.stderr
    r = run_cli("latency", "nope")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "hwnas latency --help" in r.stderr


def test_search_refuses_zero_epochs(tmp_path):
    r = run_cli("search", "--space", str(TOY_SPACE), "--strategy", "random", "--table", str(TABLE),
                "--latency-ms", "1", "--epochs", "0", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "--epochs must be >= 1" in r.stderr and not (tmp_path / "r").exists()


def test_hwnas_error_comes_before_any_warning(monkeypatch, capsys):
    from hwnas.cli import main as cli

    def setup(p: argparse.ArgumentParser) -> None:
        def run(args):
            warnings.warn("TypedStorage is deprecated", UserWarning)
            warnings.warn("TypedStorage is deprecated", UserWarning)
            raise InputError("the table is bad.")

        p.set_defaults(func=run)

    cli.build_parser()
    monkeypatch.setitem(cli.COMMANDS, "boom", ("test", setup))
    assert cli.main(["boom"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["hwnas: error: the table is bad.", "warning: UserWarning: TypedStorage is deprecated"]
