"""What every architecture of a run shares (resolution, width, classes) and its canonical id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ArchSettings:
    """Resolution, width multiplier and classes of the architectures of a table or a run."""

    resolution: int
    width_mult: float
    num_classes: int

    @classmethod
    def of(cls, table: Any, space: Any) -> "ArchSettings":
        """From a latency table's ``device`` header (``resolution``, ``width_mult``, ``num_classes``), else the
        space's defaults."""
        d = table.device
        return cls(resolution=int(d.get("resolution") or space.spec.resolution),
                   width_mult=float(d.get("width_mult") or 1.0),
                   num_classes=int(d.get("num_classes") or space.spec.num_classes))


def arch_id(space, arch: dict[str, Any]) -> str:
    """A canonical string of an architecture (one per distinct network)."""
    return json.dumps(space.canonical(arch), sort_keys=True)
