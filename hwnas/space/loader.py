"""Loading search spaces: by shipped name (``search_spaces/NAME.json``) or by file path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from hwnas.errors import InputError
from hwnas.jsonio import read_json
from hwnas.safeio import check_name, short
from hwnas.space.cells.cell_space import CellSpace
from hwnas.space.cells.cell_spec import parse_cell_space
from hwnas.space.schema import parse_space
from hwnas.space.search_space import SearchSpace

#: ``search_spaces/`` at the repository root (hwnas is installed in editable mode by the Makefile).
SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


def space_names(kind: str | None = None) -> list[str]:
    """Names of the shipped spaces (``search_spaces/*.json``), sorted; only ``chain`` or ``cell``
    spaces when ``kind`` is given."""
    names = sorted(p.stem for p in SPACES_DIR.glob("*.json"))
    if kind is None:
        return names
    return [n for n in names if _kind(read_json(SPACES_DIR / f"{n}.json", what="space file")) == kind]


def _kind(raw: Any) -> Any:
    """The ``kind`` of a space file's contents (``chain`` when absent)."""
    return raw.get("kind", "chain") if isinstance(raw, dict) else "chain"


def load_space(name_or_path: str | Path) -> "SearchSpace | CellSpace":
    """Loads a space by shipped name (``proxyless``) or by path to a space file.

    Only for names and paths from the command line: a space named inside a file (an arch file's
    ``space``, a checkpoint's arch) goes through ``load_named_space``, which never reads a path.

    Raises:
        InputError: for an unknown name, a missing or malformed file.
    """
    p = Path(name_or_path)
    if p.suffix != ".json" and not p.exists():
        candidate = SPACES_DIR / f"{name_or_path}.json"
        if not candidate.exists():
            raise InputError(f"space {short(str(name_or_path))} is unknown (shipped spaces: {', '.join(space_names())}).")
        p = candidate
    raw = read_json(p, what="space file")
    kind = _kind(raw)
    if kind == "cell":
        return CellSpace(parse_cell_space(raw, origin=str(p)))
    if kind != "chain":
        raise InputError(f"{p}: kind: must be 'chain' or 'cell', got {short(kind)}.")
    return SearchSpace(parse_space(raw, origin=str(p)))


def load_named_space(name: Any, *, field: str) -> "SearchSpace | CellSpace":
    """Loads a shipped space by the plain name a file gives (``field`` names it in messages).

    Raises:
        InputError: for anything but a shipped space's name (a path, ``..``, an unknown name).
    """
    check_name(name, field=field)
    if name not in space_names():
        raise InputError(f"{field} {short(name)} is not a shipped space (shipped spaces: {', '.join(space_names())}); "
                         f"pass --space FILE for a space of your own.")
    return load_space(SPACES_DIR / f"{name}.json")


def space_of_choices(choices: Mapping[str, Any]) -> str | None:
    """The shipped space whose decisions are exactly these choice names, if any (for messages)."""
    keys = set(choices)
    for n in space_names():
        try:
            if {d.name for d in load_space(SPACES_DIR / f"{n}.json").decisions} == keys:
                return n
        except InputError:
            continue
    return None
