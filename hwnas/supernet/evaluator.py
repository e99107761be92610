"""Scoring candidate paths with inherited supernet weights (SPOS, Guo et al. 2020, Sec. 3.4).

Before each candidate is scored on the architecture-validation split, its BatchNorm statistics are
recalibrated on training batches: the running statistics of shared BN layers mix all the paths
trained through them and do not fit any single one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from hwnas.supernet.supernet import PathModel, SuperNet
from hwnas.train import Dataset, Split, batches, evaluate, recalibrate_bn

#: ``epoch`` index reserved for the BN-recalibration batch order (never a training epoch).
_BN_EPOCH = 1_000_003


class SupernetEvaluator:
    """Accuracy of paths of a supernet, cached per distinct network.

    Args:
        supernet: A trained supernet.
        ds: Dataset (BN batches from ``ds.train``, scores on ``split``).
        bn_batches: Training batches used to recalibrate BN statistics.
        batch_size: Batch size of recalibration and scoring.
        seed: Seed of the recalibration batch order.
        split: Split to score on (default ``ds.arch``).
    """

    def __init__(self, supernet: SuperNet, ds: Dataset, *, bn_batches: int = 4, batch_size: int = 128,
                 seed: int = 0, split: Split | None = None) -> None:
        self.supernet, self.ds = supernet, ds
        self.bn_batches, self.batch_size, self.seed = bn_batches, batch_size, seed
        self.split = split if split is not None else ds.arch
        self.cache: dict[tuple, float] = {}

    def key(self, indices: Sequence[int] | np.ndarray) -> tuple:
        """One key per distinct network (inactive decisions do not matter)."""
        return tuple((s.slot, s.block) for s in self.supernet.path(indices))

    def score(self, indices: Sequence[int] | np.ndarray) -> float:
        """Top-1 accuracy (fraction) of a path on the scoring split, BN recalibrated first."""
        k = self.key(indices)
        hit = self.cache.get(k)
        if hit is not None:
            return hit
        model = PathModel(self.supernet, indices)
        res = self.supernet.resolution
        recalibrate_bn(model, batches(self.ds.train, self.ds, batch_size=self.batch_size, resolution=res,
                                      seed=self.seed, epoch=_BN_EPOCH), num_batches=self.bn_batches)
        with torch.no_grad():
            acc = evaluate(model, self.split, self.ds, resolution=res, batch_size=256).accuracy
        self.cache[k] = acc
        return acc
