"""Weight-sharing supernet training: the one loop every one-shot strategy uses for its weights.

Per step, a path sampler (decisions only) picks m paths; each path's loss on the same batch is
back-propagated and the gradients are accumulated before one SGD step (m = 1 for SPOS uniform
sampling, Guo et al. 2020, Sec. 3.2; m = max options for FairNAS strict fairness, Chu et al. 2021,
Sec. 3.2). The learning rate follows a cosine schedule of the step, the data order depends on
(seed, epoch), the paths and dropout masks on (seed, step), so a run resumed from a checkpoint
repeats exactly what an uninterrupted run does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from hwnas.supernet.samplers import PathSampler
from hwnas.supernet.supernet import SuperNet
from hwnas.train import Dataset, RunDir, batches, classification_loss, cosine_lr, make_sgd, num_batches, set_lr


@dataclass(frozen=True)
class SupernetTrainConfig:
    """Supernet training settings.

    Attributes:
        epochs: Passes over the weight-training split.
        batch_size: Examples per step.
        lr: Peak SGD learning rate (cosine decay to 0).
        momentum: SGD momentum.
        weight_decay: L2 on weights (not on BN/bias).
        label_smoothing: Cross-entropy label smoothing.
        warmup_epochs: Linear warm-up, epochs.
        checkpoint_every: Steps between checkpoints (and one at every epoch end).
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    checkpoint_every: int = 50

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The generator of one training step: a pure function of (seed, stream, step)."""
    return np.random.default_rng([seed, stream, step])


def train_supernet(supernet: SuperNet, ds: Dataset, sampler: PathSampler, *, config: SupernetTrainConfig,
                   seed: int, run: RunDir, state: dict[str, Any] | None = None,
                   extra_state: Callable[[], dict[str, Any]] = dict) -> dict[str, Any]:
    """Trains the supernet's weights on ``ds.train`` with paths from ``sampler``.

    Args:
        supernet: The supernet (trained in place, channels_last).
        ds: Dataset; weights train on ``ds.train``.
        sampler: Decisions of the paths of each step, from the step's generator.
        config: Settings.
        seed: Run seed (data order and paths).
        run: Run directory (history lines per epoch, atomic checkpoints).
        state: A checkpoint to resume from (``None``: start fresh).
        extra_state: Adds strategy state to every checkpoint.

    Returns:
        The final training state (also the last checkpoint's ``supernet_train``).
    """
    res = supernet.resolution
    per_epoch = num_batches(ds.train, batch_size=config.batch_size, drop_last=True)
    total = per_epoch * config.epochs
    if state is not None and state.get("supernet_train", {}).get("step", 0) >= total:
        return dict(state["supernet_train"])
    optimizer = make_sgd(supernet.parameters(), lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)
    step, loss_sum, correct, seen = 0, 0.0, 0, 0
    if state is not None and "supernet_train" in state:
        supernet.load_state_dict(state["supernet"])
        optimizer.load_state_dict(state["optimizer"])
        st = state["supernet_train"]
        step, loss_sum, correct, seen = st["step"], st["loss_sum"], st["correct"], st["seen"]
    supernet.train()

    def checkpoint() -> None:
        run.save_checkpoint({
            "phase": "supernet", "supernet": supernet.state_dict(), "optimizer": optimizer.state_dict(),
            "supernet_train": {"step": step, "loss_sum": loss_sum, "correct": correct, "seen": seen},
            **extra_state(),
        })

    bar = tqdm(total=total, initial=step, desc="supernet", unit="step", leave=False, dynamic_ncols=True)
    while step < total:
        epoch, start = divmod(step, per_epoch)
        for x, y in batches(ds.train, ds, batch_size=config.batch_size, resolution=res, seed=seed, epoch=epoch,
                            start=start, drop_last=True):
            torch.manual_seed(seed * 1_000_003 + step)  # dropout masks: a function of (seed, step) too
            set_lr(optimizer, cosine_lr(config.lr, step, total, warmup_steps=int(config.warmup_epochs * per_epoch)))
            optimizer.zero_grad(set_to_none=True)
            for path in sampler(step_rng(seed, step)):
                logits = supernet(x, path)
                loss = classification_loss(logits, y, label_smoothing=config.label_smoothing)
                loss.backward()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
            optimizer.step()
            step += 1
            bar.update(1)
            run.crash_point("supernet_step")
            if step % per_epoch == 0:
                run.append_history({"phase": "supernet", "epoch": step // per_epoch, "step": step,
                                    "train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen),
                                    "lr": optimizer.param_groups[0]["lr"]})
                loss_sum, correct, seen = 0.0, 0, 0
                checkpoint()
            elif step % config.checkpoint_every == 0:
                checkpoint()
            if step >= total:
                break
    bar.close()
    return {"step": step, "loss_sum": 0.0, "correct": 0, "seen": 0}
