"""Reading JSON with clear errors and writing files atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hwnas.errors import InputError
from hwnas.safeio import MAX_JSON_BYTES, read_bounded_bytes


def read_json(path: str | os.PathLike, *, what: str) -> Any:
    """Reads a JSON file of at most ``MAX_JSON_BYTES``; a missing, oversized or malformed file raises
    ``InputError`` naming it.

    Args:
        path: File to read.
        what: What the file is, for the message (e.g. "arch file").
    """
    p = Path(path)
    data = read_bounded_bytes(p, what=what, limit=MAX_JSON_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {p} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} {p} is not a UTF-8 text file.") from None
    except RecursionError:
        raise InputError(f"{what} {p} nests its JSON too deeply.") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically: a temp file in the same folder, fsync, rename.

    The file gets the permissions of any new file (0666 minus the umask), not ``mkstemp``'s 0600.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Serializes ``obj`` as JSON and writes it atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=False)
    return atomic_write_bytes(path, (text + "\n").encode())
