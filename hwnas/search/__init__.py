"""Stage 5, search: takes a space, a latency table, data and a budget; runs a strategy
(``strategies/``) on the supernet under the objective and writes a run directory
(``RUN/summary.json``, ``RUN/best_arch.json``).
"""

from hwnas.search.runner import SearchSettings, run_search
from hwnas.search.strategies import load_strategies

__all__ = [
    "SearchSettings",
    "load_strategies",
    "run_search",
]
