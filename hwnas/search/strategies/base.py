"""The strategy interface: strategies see decisions and typed services, never training loops.

A strategy receives a ``SearchContext`` whose typed fields act on option-index vectors
(``SearchSpace.encode``): vectorized cost prediction, constraint checks, supernet weight training
with a path sampler, and supernet scoring of a path; gradient strategies also get the supernet and
the data to write their own steps. It returns the best decisions it found and
every candidate it evaluated. It keeps its own state in the run directory through ``ctx.checkpoint``
and resumes from ``ctx.state``.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, Sequence

import numpy as np

from hwnas.latency import BatchPredictor, LatencyTable
from hwnas.plots import alpha_heatmap
from hwnas.search.objective import Constraints
from hwnas.space import ArchSettings, SearchSpace
from hwnas.supernet import PathSampler, SuperNet, SupernetTrainConfig
from hwnas.train import Dataset, RunDir


@dataclass
class Costs:
    """Vectorized cost prediction on option indices (N, num_decisions) → (N,)."""

    latency: Callable[[np.ndarray], np.ndarray]  # ms
    flops: Callable[[np.ndarray], np.ndarray]
    params: Callable[[np.ndarray], np.ndarray]

    def all(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        indices = np.atleast_2d(indices)
        return self.latency(indices), self.flops(indices), self.params(indices)


class TrainWeights(Protocol):
    """``SearchContext.train_weights``: trains the supernet's weights with ``sampler``'s paths
    (``hwnas.supernet.train_supernet``); ``on_epoch`` runs at each epoch end and returns history
    fields, ``extra_state`` adds the strategy's state (``{"strategy": ...}``) to every checkpoint."""

    def __call__(self, sampler: PathSampler, *, on_epoch: Callable[[int], dict[str, Any]] | None = None,
                 extra_state: Callable[[], dict[str, Any]] = dict) -> None: ...


@dataclass(frozen=True)
class SearchContext:
    """Everything a strategy may use, as named, typed fields (a typo fails at attribute access).

    Attributes:
        space: The search space (decisions, sampling, mutation, crossover).
        constraints: Hard bounds for the current budget.
        costs: Vectorized predicted latency / FLOPs / params.
        seed: Run seed.
        run: Run directory (history, checkpoints).
        state: The checkpoint to resume from, or ``None``.
        train_weights: Trains the supernet's weights for the configured epochs with a path sampler
            (resumable; a no-op once done); ``TrainWeights`` says what else it takes.
        score: Accuracy of a path with inherited weights (BN recalibrated), cached until
            ``forget_scores``.
        score_many: ``score`` of each path of a pool, in order: the pool is shared out among the
            processes of a data-parallel run and the scores gathered (one process: one by one).
        budgets: Latency budgets of the run, ms: ``constraints.latency_ms`` first, then the other
            ``--pareto`` budgets.
        settings: Resolution, width and classes of the run's architectures (``decode``).
        predictor: The table's vectorized predictor, with the differentiable expected latency
            (``expected_latency``) for gradient strategies.
        table: The latency table (its ``device`` header says what measured it).
        dataset: The run's data (weight-training, architecture and test splits).
        train_config: Supernet weight-training settings (epochs, batch size, learning rate, ...).
        supernet: The weight-sharing supernet, for strategies that write their own weight and
            architecture steps on it (the DNAS strategies, ``hwnas.search.dnas.alternate``).
        supernet_state: The supernet's fields of a checkpoint (weights, training progress).
        forget_scores: Empties ``score``'s cache; a strategy that scores paths while the weights still
            change (TNAS) calls it after they changed.
    """

    space: SearchSpace
    constraints: Constraints
    costs: Costs
    seed: int
    run: RunDir
    state: dict[str, Any] | None
    train_weights: TrainWeights
    score: Callable[[np.ndarray], float]
    budgets: tuple[float, ...]
    settings: ArchSettings
    predictor: BatchPredictor
    table: LatencyTable
    dataset: Dataset
    train_config: SupernetTrainConfig
    supernet: SuperNet
    supernet_state: Callable[[], dict[str, Any]]
    forget_scores: Callable[[], None]
    score_many: Callable[[Sequence[np.ndarray]], list[float]]

    def feasible(self, indices: np.ndarray) -> np.ndarray:
        """Constraint check of option indices (N, D) → (N,) bool."""
        lat, flops, params = self.costs.all(indices)
        return self.constraints.feasible(latency=lat, flops=flops, params=params)

    def decode(self, indices: np.ndarray) -> dict[str, Any]:
        """The architecture JSON of option indices (D,) at the run's settings."""
        s = self.settings
        return self.space.decode(indices, resolution=s.resolution, width_mult=s.width_mult,
                                 num_classes=s.num_classes)

    def evaluate(self, pool: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """Each distinct option-index vector of ``pool``, in order: ``indices``, supernet ``accuracy``
        (``score_many``) and predicted ``latency_ms``, ``flops`` and ``params``."""
        keys = list(dict.fromkeys(tuple(int(v) for v in idx) for idx in pool))
        distinct = [np.asarray(k, dtype=np.int64) for k in keys]
        out = []
        for idx, acc in zip(distinct, self.score_many(distinct)):
            lat, flops, params = (float(v[0]) for v in self.costs.all(idx[None]))
            out.append({"indices": [int(v) for v in idx], "accuracy": acc, "latency_ms": lat, "flops": flops,
                        "params": params})
        return out

    def heatmap(self, history: Sequence[dict[str, Any]], *, title: str,
                labels: tuple[list[str], list[list[str]]] | None = None) -> str | None:
        """Writes ``alpha_heatmap.png`` (the architecture parameters of each history record, per
        decision and option) into the run and returns its file name; None without history.
        ``labels``: row and option names when the parameters are not per decision (DARTS's cell
        edges); default: the space's decisions."""
        if not history:
            return None
        names, options = labels or ([d.name for d in self.space.decisions],
                                    [[str(o) for o in d.options] for d in self.space.decisions])
        return alpha_heatmap(history, decision_names=names, option_names=options,
                             path=self.run.path / "alpha_heatmap.png", title=title).name

    def checkpoint(self, strategy_state: dict[str, Any]) -> None:
        """Saves the strategy's state (with the supernet) atomically."""
        self.run.save_checkpoint({**self.supernet_state(), "strategy": strategy_state})


@dataclass
class SearchResult:
    """The outcome of a search.

    Attributes:
        best: Option indices of the best architecture found.
        score: Its accuracy with inherited weights (fraction).
        candidates: Every evaluated candidate: ``{"indices", "accuracy", "latency_ms", "flops", "params"}``.
        extra: Strategy-specific results (e.g. per-budget winners, learned probabilities).
    """

    best: np.ndarray
    score: float
    candidates: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)


class Strategy(ABC):
    """A search strategy. Subclasses set ``name``, define their flags and ``search``."""

    name: ClassVar[str]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds the strategy's own flags (names must not collide with other strategies')."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Strategy":
        """The strategy configured from parsed flags."""
        return cls()

    def settings(self) -> dict[str, Any]:
        """Settings recorded in ``config.json`` (a resumed run must match them)."""
        return {}

    def runs_without_weight_training(self) -> bool:
        """Whether ``--epochs 0`` is meaningful (no supernet training); refused unless a strategy says so."""
        return False

    def measures_on_device(self) -> bool:
        """Whether the search times models on the table's device (and so uses ``--device-config``)."""
        return False

    @abstractmethod
    def search(self, ctx: SearchContext) -> SearchResult:
        """Runs the search."""


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Registers a strategy class under ``name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return deco
