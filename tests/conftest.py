"""Shared fixtures. Tests run in parallel workers (pytest-xdist), one torch thread each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import pytest
import torch

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
#: The shared folder beside the checkout (``../shared``); ``HWNAS_SHARED`` points elsewhere (e.g. a
#: missing folder, to check that CI fails without the published reference files).
SHARED = Path(os.environ.get("HWNAS_SHARED") or ROOT.parent / "shared")
#: The published latency tables and architectures the importer tests read (``../shared/reference``).
REFERENCE = SHARED / "reference"
TOY_SPACE = DATA / "toy_space.json"


def in_ci() -> bool:
    """Whether the suite runs in CI (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def shared_reference(*parts: str) -> Path:
    """A path under ``../shared/reference``; when it is absent the test skips, or FAILS under ``CI=true``.

    The importer and architecture-import tests are the only tests of those modules: a CI run
    without the reference files must not pass silently.
    """
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        why = f"{path} is not present (the published reference files, ../shared/reference)"
        if in_ci():
            pytest.fail(f"{why}; CI=true needs them: these are the only tests of the importers", pytrace=False)
        pytest.skip(why)
    return path


@pytest.fixture
def reference() -> Path:
    """``../shared/reference`` (``shared_reference``: skip locally, fail in CI when absent)."""
    return shared_reference()


@pytest.fixture
def toy_space():
    from hwnas.space.loader import load_space

    return load_space(TOY_SPACE)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            crash: str | None = None) -> subprocess.CompletedProcess:
    """Runs the real ``hwnas`` console script (a separate process).

    Args:
        args: Command-line arguments.
        cwd: Working directory.
        timeout: Seconds.
        crash: ``event:n`` — the process exits abruptly (137, as after kill -9) the n-th time it
            reaches that crash point (``hwnas.train.runs.RunDir.crash_point``).
    """
    exe = Path(sys.executable).parent / "hwnas"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if crash:
        env["HWNAS_CRASH_AT"] = crash
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def read_history(run: Path) -> list[dict]:
    """The records of a run directory's ``history.jsonl``."""
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def cli_json(*args: str, cwd: Path | None = None) -> dict:
    """Runs ``hwnas ... --json`` and parses its single JSON object (asserting exit 0)."""
    r = run_cli(*args, "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class SyntheticTables(dict):
    """Space name → synthetic table (32 px, width 0.25, 10 classes), made on first use, once per worker."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def __missing__(self, name: str) -> Path:
        self[name] = synthetic_table(name, resolution=32, width_mult=0.25, num_classes=10,
                                     path=self.folder / f"{name}.json")
        return self[name]


@pytest.fixture(scope="session")
def tables(tmp_path_factory) -> SyntheticTables:
    """Synthetic tables by space name (``tables["proxyless"]``), for the CLI search tests."""
    return SyntheticTables(tmp_path_factory.mktemp("tables"))


def search_runner(*common: str) -> Callable[..., subprocess.CompletedProcess]:
    """``hwnas search COMMON... ARGS... --json`` as a function of ARGS (and ``crash``, see ``run_cli``)."""

    def search(*args: str, crash: str | None = None) -> subprocess.CompletedProcess:
        return run_cli("search", *common, *args, "--json", crash=crash, timeout=600)

    return search


def assert_resume_repeats(search: Callable[..., subprocess.CompletedProcess], args: Sequence[str], *,
                          full: subprocess.CompletedProcess, full_dir: Path, out: Path, crash: str) -> None:
    """A search killed at ``crash`` (exit 137, no summary) and resumed gives ``full``'s summary
    (but ``seconds``) and history."""
    killed = search(*args, "--out", str(out), crash=crash)
    assert killed.returncode == 137 and not (out / "summary.json").exists()
    resumed = search(*args, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    strip = lambda r: {k: v for k, v in json.loads(r.stdout).items() if k != "seconds"}  # noqa: E731
    assert strip(full) == strip(resumed)
    assert (out / "history.jsonl").read_text() == (full_dir / "history.jsonl").read_text()


def synthetic_table(space_name: str, *, resolution: int, width_mult: float, num_classes: int, path: Path,
                    ms_per_gflop: float = 10.0, overhead_ms: float = 0.01) -> Path:
    """A latency table with SYNTHETIC entries (overhead + FLOPs-proportional), for search-mechanics tests.

    Entries are not measurements; the header says so (backend "synthetic").
    """
    from hwnas.latency.table import LatencyTable
    from hwnas.space.blocks import op_key
    from hwnas.space.cost import CostCounter
    from hwnas.space.loader import load_space

    sp = load_space(space_name)
    counter = CostCounter()
    entries = {}
    for b in sp.all_blocks(resolution=resolution, width_mult=width_mult, num_classes=num_classes):
        ms = overhead_ms + counter.block(b).flops / 1e9 * ms_per_gflop
        entries[op_key(b)] = {"median_ms": ms, "mean_ms": ms, "std_ms": 0.0, "p10_ms": ms, "p90_ms": ms, "count": 1}
    device = {"name": "synthetic", "backend": "synthetic", "resolution": resolution, "width_mult": width_mult,
              "num_classes": num_classes, "spaces": [sp.name]}
    LatencyTable(device=device, entries=entries).save(path)
    return path
