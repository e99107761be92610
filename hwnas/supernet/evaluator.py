"""Scoring candidate paths with inherited supernet weights (SPOS, Guo et al. 2020, Sec. 3.4).

Before each candidate is scored on the architecture-validation split, its BatchNorm statistics are
recalibrated on training batches: the running statistics of shared BN layers mix all the paths
trained through them and do not fit any single one.

Cost (issue 16): at CPU-sized resolutions most of a score is the forward passes themselves (convolution
and BatchNorm, ``bn_batches × batch_size`` recalibration images plus the whole scoring split). Two
overheads are removed without changing what is computed:

* the input batches (resize, normalize, channels_last) are the same for every candidate, so they are
  prepared once per evaluator (up to ``cache_bytes``, else per call as before);
* the path is wrapped in a module that holds only the candidate modules it runs, so switching modes
  and finding its BatchNorm layers no longer walks every candidate of the supernet (the largest
  overhead on spaces with many candidates, e.g. ``mnasnet``). Only the path's BN layers are reset and
  recalibrated; they are the only ones whose statistics the path's forward pass reads. Every BN layer
  of the supernet still gets the cumulative momentum (None) during recalibration, as before: a sliced
  block runs on a template that ``SuperNet`` caches per block and that takes its momentum from the
  BN layers of the slot it was first made for, which may be another slot with an identical block.

A pool of candidates (``score_many``) is shared out among the processes of a data-parallel run
(``hwnas.train.distributed``): each scores its round-robin share of the distinct unscored networks,
and the scores are gathered into every process's cache. A score depends only on the (identical)
weights and the data, never on which process computes it or on what it scored before (BN
statistics are reset first), so the result equals one process's.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from hwnas.supernet.supernet import Step, SuperNet
from hwnas.train import SINGLE_PROCESS, Dataset, Distributed, Split, batches, recalibrate_bn

#: ``epoch`` index reserved for the BN-recalibration batch order (never a training epoch).
_BN_EPOCH = 1_000_003
#: Batch size of the scoring pass.
EVAL_BATCH = 256


class _Path(nn.Module):
    """One path of a supernet whose submodules are only the candidate modules the path runs.

    ``modules()``, ``train()`` and ``eval()`` visit these modules, not the whole supernet; the
    forward pass is ``SuperNet.run_steps``, the same computation as ``PathModel``.
    """

    def __init__(self, supernet: SuperNet, steps: Sequence[Step]) -> None:
        super().__init__()
        self.steps = list(steps)
        names = list(dict.fromkeys(s.candidate for s in self.steps if s.candidate is not None))
        self.used = nn.ModuleList([supernet.candidates[n] for n in names])
        self._run = supernet.run_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.steps, x)


class SupernetEvaluator:
    """Accuracy of paths of a supernet, cached per distinct network.

    Args:
        supernet: A trained supernet.
        ds: Dataset (BN batches from ``ds.train``, scores on ``split``).
        bn_batches: Training batches used to recalibrate BN statistics.
        batch_size: Batch size of recalibration and scoring.
        seed: Seed of the recalibration batch order.
        split: Split to score on (default ``ds.arch``).
        cache_bytes: Largest size of the prepared input batches kept between calls (0: none kept).
        dist: The processes that share ``score_many``'s pools.
    """

    def __init__(self, supernet: SuperNet, ds: Dataset, *, bn_batches: int = 4, batch_size: int = 128,
                 seed: int = 0, split: Split | None = None, cache_bytes: int = 256 * 2**20,
                 dist: Distributed = SINGLE_PROCESS) -> None:
        self.supernet, self.ds, self.dist = supernet, ds, dist
        self.bn_batches, self.batch_size, self.seed = bn_batches, batch_size, seed
        self.split = split if split is not None else ds.arch
        self.cache_bytes = cache_bytes
        self.cache: dict[tuple, float] = {}
        self._inputs: tuple[list, list] | None = None
        self._bns = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def key(self, indices: Sequence[int] | np.ndarray) -> tuple:
        """One key per distinct network (inactive decisions do not matter)."""
        return tuple((s.slot, s.block) for s in self.supernet.path(indices))

    @property
    def bn_images(self) -> int:
        """Training images one recalibration forwards (at most ``bn_batches × batch_size``)."""
        return min(len(self.ds.train), self.bn_batches * self.batch_size)

    def _bn_data(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        res = self.supernet.resolution
        data = batches(self.ds.train, self.ds, batch_size=self.batch_size, resolution=res, seed=self.seed,
                       epoch=_BN_EPOCH)
        for i, xy in enumerate(data):
            if i >= self.bn_batches:
                return
            yield xy

    def _eval_data(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return batches(self.split, self.ds, batch_size=EVAL_BATCH, resolution=self.supernet.resolution,
                       shuffle=False)

    def _data(self) -> tuple[Sequence, Sequence]:
        """(recalibration batches, scoring batches): the prepared ones when they fit ``cache_bytes``."""
        if self._inputs is not None:
            return self._inputs
        res = self.supernet.resolution
        size = (self.bn_images + len(self.split)) * 3 * res * res * 4
        if size > self.cache_bytes:
            return _Replay(self._bn_data), _Replay(self._eval_data)
        self._inputs = (list(self._bn_data()), list(self._eval_data()))
        return self._inputs

    def score(self, indices: Sequence[int] | np.ndarray) -> float:
        """Top-1 accuracy (fraction) of a path on the scoring split, BN recalibrated first."""
        steps = self.supernet.path(indices)
        k = tuple((s.slot, s.block) for s in steps)
        hit = self.cache.get(k)
        if hit is not None:
            return hit
        model = _Path(self.supernet, steps)
        bn_data, eval_data = self._data()
        device = next(self.supernet.parameters()).device
        momenta = [bn.momentum for bn in self._bns]
        for bn in self._bns:
            bn.momentum = None
        try:
            recalibrate_bn(model, ((x.to(device), y) for x, y in bn_data), num_batches=self.bn_batches)
        finally:
            for bn, momentum in zip(self._bns, momenta):
                bn.momentum = momentum
        model.eval()
        correct, n = 0, 0
        with torch.no_grad():
            for x, y in eval_data:
                correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
                n += int(y.numel())
        model.train()
        acc = correct / max(1, n)
        self.cache[k] = acc
        return acc

    def score_many(self, pool: Sequence[Sequence[int] | np.ndarray]) -> list[float]:
        """``score`` of each path of ``pool``, in order; the distinct unscored networks are shared out
        among the processes (``Distributed.map``) and every process caches every score."""
        keys = [self.key(p) for p in pool]
        first: dict[tuple, Sequence[int] | np.ndarray] = {}
        for k, p in zip(keys, pool):
            if k not in self.cache:
                first.setdefault(k, p)
        todo = list(first)
        for k, acc in zip(todo, self.dist.map(lambda k: self.score(first[k]), todo)):
            self.cache[k] = acc
        return [self.cache[k] for k in keys]


class _Replay:
    """An iterable that makes a fresh iterator each time (the uncached inputs)."""

    def __init__(self, make) -> None:
        self._make = make

    def __iter__(self):
        return self._make()
