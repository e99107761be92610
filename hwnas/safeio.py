"""Bounded reading of untrusted files, output checks and short quoting (see SECURITY.md).

Latency tables, space files, arch files and published YAML tables are data that users download and
share: hwnas reads them with a size limit, parses YAML without aliases (no billion-laughs
expansion), quotes at most a short prefix of a bad value in its messages, and accepts a name taken
from such a file only as a plain name, never as a path. Outputs named on the command line are
checked before any work starts, so an unwritable ``--out`` is one sentence (exit 2) with nothing
left behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from hwnas.errors import InputError

#: Largest JSON input (tables, spaces, arch files, device configs), bytes.
MAX_JSON_BYTES = 64 * 1024 * 1024
#: Largest published YAML table, bytes (the real ProxylessNAS/OFA tables are about 15 KB).
MAX_YAML_BYTES = 8 * 1024 * 1024
#: Longest prefix of a bad value that an error message quotes, characters.
QUOTE_CHARS = 60
#: A plain name (space, parser, file stem): no path separators, no leading dot.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def short(value: Any, *, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut).

    Containers are summarized by type and size first, so a huge (or deeply shared) value is never
    formatted in full.
    """
    if isinstance(value, (dict, list, tuple, set)) and len(value) > 8:
        return f"<{type(value).__name__} of {len(value)} items>"
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit]  # only the prefix is formatted
        return repr(value)[:limit] + "..."
    text = repr(value) if not isinstance(value, (dict, list, tuple, set)) else _short_container(value, limit)
    return text if len(text) <= limit else text[:limit] + "..."


def _short_container(value: Any, limit: int) -> str:
    parts, size = [], 0
    items = value.items() if isinstance(value, dict) else value
    for item in items:
        part = (f"{short(item[0], limit=limit)}: {short(item[1], limit=limit)}" if isinstance(value, dict)
                else short(item, limit=limit))
        parts.append(part)
        size += len(part) + 2
        if size > limit:
            break
    o, c = ("{", "}") if isinstance(value, (dict, set)) else ("(", ")") if isinstance(value, tuple) else ("[", "]")
    return o + ", ".join(parts) + c


def read_bounded_bytes(path: str | os.PathLike, *, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Raises:
        InputError: for a missing file, a folder, or a file larger than ``limit``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p} does not exist." if not p.exists() else f"{what} {p} is not a regular file.")
    try:
        with open(p, "rb") as fh:
            data = fh.read(limit + 1)  # never more than the limit, even if the file grows
    except OSError as exc:
        raise InputError(f"{what} {p} cannot be read ({exc.strerror or exc}).") from None
    if len(data) > limit:
        size = f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
        raise InputError(f"{what} {p} is larger than the limit of {size}.")
    return data


def load_yaml_text(text: str) -> Any:
    """Parses YAML with ``yaml.SafeLoader`` but refuses anchors and aliases (``&a`` / ``*a``).

    Published latency tables use neither; refusing them keeps a billion-laughs file from expanding.

    Raises:
        yaml.YAMLError: for malformed YAML, or any anchor or alias (a ``ComposerError``).
    """
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise yaml.composer.ComposerError(None, None, "anchors and aliases are not allowed",
                                                  event.start_mark)
            return super().compose_node(parent, index)

    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def check_name(name: Any, *, field: str) -> str:
    """A plain name read from a file (letters, digits, ``.``, ``_``, ``-``; never a path).

    Raises:
        InputError: naming ``field`` for anything else.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise InputError(f"{field} must be a plain name (letters, digits, '.', '_', '-'), got {short(name)}.")
    return name


def _nearest_existing(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _probe_dir(folder: Path, *, flag: str, target: Path) -> None:
    """Creates and removes one temp file in ``folder`` (what an atomic write does) or raises."""
    if not folder.is_dir():
        raise InputError(f"{flag} {target} cannot be written: {folder} is a file, not a folder.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".hwnas-probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"{flag} {target} cannot be written ({exc.strerror or exc}).") from None
    os.close(fd)
    os.unlink(tmp)


def check_writable_output(path: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Refuses, before any work, an output file that cannot be written atomically.

    The nearest existing folder above ``path`` must accept a new file (missing folders in between
    are created by the write itself). Nothing is left behind.

    Args:
        path: The output file.
        flag: The option that named it, for the message.

    Raises:
        InputError: one sentence naming ``flag`` and ``path``.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p} is a folder; give a file name.")
    _probe_dir(_nearest_existing(p.parent), flag=flag, target=p)
    return p


def check_output_dir(path: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Refuses, before any work, an output folder that cannot be created or written.

    Raises:
        InputError: one sentence naming ``flag`` and ``path`` (e.g. a file is in the way).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {p} exists and is not a folder.")
    _probe_dir(_nearest_existing(p), flag=flag, target=p)
    return p
