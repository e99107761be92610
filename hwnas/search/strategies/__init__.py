"""Search strategies: one file each, registered by name (``hwnas search --strategy NAME``)."""

from __future__ import annotations

import importlib
import pkgutil

from hwnas.search.strategies.base import STRATEGIES, SearchContext, SearchResult, Strategy, register_strategy


def load_strategies() -> dict:
    """Imports every strategy module (each registers itself) and returns the registry."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"hwnas.search.strategies.{info.name}")
    return STRATEGIES


__all__ = ["STRATEGIES", "SearchContext", "SearchResult", "Strategy", "register_strategy", "load_strategies"]
