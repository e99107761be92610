"""Run directories (DESIGN.md, contract): config, history, atomic checkpoint, summary, resume.

``RUN/config.json`` (resolved settings), ``RUN/history.jsonl`` (one line per step or generation),
``RUN/checkpoint.pt`` (atomic; ``--resume`` continues from it), ``RUN/summary.json``,
``RUN/best_arch.json`` and plots. The checkpoint records how many history lines it covers, so a run
killed between a history write and the next checkpoint drops the extra lines on resume and ends
with the same history as an uninterrupted run.

Data-parallel runs (``hwnas.train.distributed``): only rank 0 writes the folder. The other processes
check nothing themselves (rank 0's verdict on the folder, ``InputError`` included, reaches them),
receive the checkpoint and the history rank 0 reads on resume, and write whatever they would write
into a private scratch folder (``path`` there), removed when the ``RunDir`` goes away, so code that
writes plots or files next to the run needs no rank test and never races rank 0.

Crash testing: the environment variable ``HWNAS_CRASH_AT="<event>:<n>"`` makes the process exit
abruptly (``os._exit(137)``, as after ``kill -9``) the n-th time ``crash_point(<event>)`` is reached.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.jsonio import atomic_write_bytes, read_json, write_json_atomic
from hwnas.train.checkpoint import load_checkpoint, save_checkpoint
from hwnas.train.distributed import SINGLE_PROCESS, Distributed

#: config fields that may differ between the original run and a resume (``launch``: how many
#: processes, which backend; a run may resume on another number of processes).
RESUME_FREE = ("resume", "launch")


class RunDir:
    """A run directory.

    Args:
        path: The folder (created).
        config: The run's resolved settings (written to ``config.json``).
        resume: Continue a previous run in ``path`` (its config must match).
        dist: The processes of the run (rank 0 writes ``path``; see the module docstring).

    Attributes:
        dist: The processes of the run, for the training loops that use the folder
            (``train_supernet``, ``alternate``: data shards, gradient all-reduce).

    Raises:
        InputError: when ``path`` holds a run and ``resume`` is off, or the config of the run to
            resume differs (the first differing field is named).
    """

    def __init__(self, path: str | Path, *, config: Mapping[str, Any], resume: bool,
                 dist: Distributed = SINGLE_PROCESS) -> None:
        self.dist = dist
        self.path = Path(path)
        self._crash_counts: dict[str, int] = {}
        dist.agree(lambda: self._open(config, resume=resume))
        if not dist.is_main:
            self.path = Path(tempfile.mkdtemp(prefix=f"hwnas-rank{dist.rank}-"))
            weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def _open(self, config: Mapping[str, Any], *, resume: bool) -> None:
        cfg_path = self.path / "config.json"
        if resume:
            if not cfg_path.exists():
                raise InputError(f"--resume: {self.path} holds no run to resume (no config.json).")
            old = read_json(cfg_path, what="run config")
            for key in sorted(set(old) | set(config)):
                if key in RESUME_FREE:
                    continue
                if old.get(key) != json.loads(json.dumps(config.get(key))):
                    raise InputError(f"--resume: setting {key!r} differs from the run in {self.path} "
                                     f"({old.get(key)!r} there, {config.get(key)!r} now).")
        elif self.path.exists() and any(self.path.iterdir()):
            raise InputError(f"--out {self.path} already holds files; pass --resume to continue that run "
                             f"or choose an empty folder.")
        self.path.mkdir(parents=True, exist_ok=True)
        if not resume:
            write_json_atomic(cfg_path, dict(config))

    # ---- history -----------------------------------------------------------------------------

    @property
    def history_path(self) -> Path:
        return self.path / "history.jsonl"

    def append_history(self, record: Mapping[str, Any]) -> None:
        """Appends one JSON line and flushes it to disk."""
        with open(self.history_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def history(self) -> list[dict[str, Any]]:
        """All history records (a torn last line, from a crash mid-write, is ignored)."""
        if not self.history_path.exists():
            return []
        out = []
        for line in self.history_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return out

    def truncate_history(self, n: int) -> None:
        """Keeps the first ``n`` history records (those covered by the last checkpoint)."""
        kept = self.history()[:n]
        atomic_write_bytes(self.history_path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    # ---- checkpoint --------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Writes ``state`` atomically, recording the history length it covers (rank 0 only: the
        other processes hold the same state)."""
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, {**state, "history_len": len(self.history())})

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint (history truncated to what it covers), or ``None`` when there is none.

        Rank 0 reads it; every process gets the same state and history.
        """
        state, history = self.dist.agree(self._read_checkpoint)
        if not self.dist.is_main:
            atomic_write_bytes(self.history_path, "".join(json.dumps(r) + "\n" for r in history).encode())
        return state

    def _read_checkpoint(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        if not self.checkpoint_path.exists():
            self.truncate_history(0)
            return None, []
        state = load_checkpoint(self.checkpoint_path, what="run checkpoint")
        self.truncate_history(int(state.get("history_len", 0)))
        return state, self.history()

    # ---- outputs -----------------------------------------------------------------------------

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json_atomic(self.path / name, obj)

    def crash_point(self, event: str) -> None:
        """Test hook: exits abruptly the n-th time ``event`` is reached when ``HWNAS_CRASH_AT=event:n``."""
        spec = os.environ.get("HWNAS_CRASH_AT", "")
        name, _, count = spec.partition(":")
        if name != event:
            return
        self._crash_counts[event] = self._crash_counts.get(event, 0) + 1
        if self._crash_counts[event] == int(count or 1):
            os._exit(137)
