"""Weight-sharing supernet training: the one loop every one-shot strategy uses for its weights.

Per step, a path sampler (decisions only) picks m paths; each path's loss on the same batch is
back-propagated and the gradients are accumulated before one SGD step (m = 1 for SPOS uniform
sampling, Guo et al. 2020, Sec. 3.2; m = max options for FairNAS strict fairness, Chu et al. 2021,
Sec. 3.2). The learning rate follows a cosine schedule of the step, the data order depends on
(seed, epoch), the paths and dropout masks on (seed, step), so a run resumed from a checkpoint
repeats exactly what an uninterrupted run does.

Options beyond the papers' recipe (``SupernetTrainConfig``; every one off by default unless noted):

* ``candidate_init="aligned"``: the candidates of a layer start as slices of one module
  (``SuperNet.initialize``), so a path's features do not change basis with every choice;
* ``warmup_epochs``: linear learning-rate warm-up (Goyal et al. 2017, Sec. 2.2, "gradual warmup");
* ``shared_epochs``: a ``separate`` supernet first trains as an ``entangled`` one, then each candidate
  inherits its slices and trains on its own (Few-shot NAS's split of a one-shot supernet into
  sub-supernets that start from its weights, Zhao et al. ICML 2021, Sec. 3.2). Measured (MobileNetV2
  space, digits, 32 px, 220 uniform steps): 90% training accuracy with 10 of 20 epochs shared,
  against 11% for the papers' separate supernet; the accuracy holds after the split (87% → 90%);
* ``sandwich``: the sandwich rule with in-place distillation (BigNAS, Yu et al. ECCV 2020, Sec. 3.1):
  each step also trains the largest and the smallest path; the largest learns from the labels, every
  other path from the largest's predictions.

Data-parallel (``torchrun``; the processes come with the run directory, ``run.dist``): each process
takes its share of every global batch of ``batch_size`` examples, all of them run the same paths,
BatchNorm normalizes over the global batch, and the gradients are averaged before each SGD step
(``hwnas.train.distributed``), so N processes train the weights one process would with the same
global batch; the history's loss and accuracy are those of the global batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hwnas.supernet.samplers import PathSampler, extreme_paths, sandwich
from hwnas.supernet.supernet import CANDIDATE_INIT, SuperNet
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
        warmup_epochs: Linear learning-rate warm-up, epochs (Goyal et al. 2017, Sec. 2.2).
        checkpoint_every: Steps between checkpoints (and one at every epoch end).
        candidate_init: ``independent`` (the papers) or ``aligned`` candidates at the start of a fresh
            run (``SuperNet.initialize``).
        sandwich: Also train the largest and smallest path every step, the others distilled in place
            from the largest (BigNAS, Yu et al. 2020, Sec. 3.1).
        shared_epochs: Epochs a ``separate`` supernet trains as an ``entangled`` one before its
            candidates split (Few-shot NAS, Zhao et al. 2021); ignored for ``entangled``.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    checkpoint_every: int = 50
    candidate_init: str = "independent"
    sandwich: bool = False
    shared_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.candidate_init not in CANDIDATE_INIT:
            raise ValueError(f"candidate_init must be one of {CANDIDATE_INIT}, got {self.candidate_init!r}")
        for name in ("warmup_epochs", "shared_epochs"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The generator of one training step: a pure function of (seed, stream, step)."""
    return np.random.default_rng([seed, stream, step])


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """In-place distillation (BigNAS Sec. 3.1): cross-entropy of the student's logits against the
    teacher's predicted distribution (gradients stop at the teacher): N, classes → scalar."""
    return -(F.softmax(teacher.detach(), dim=1) * F.log_softmax(student, dim=1)).sum(1).mean()


def train_supernet(supernet: SuperNet, ds: Dataset, sampler: PathSampler, *, config: SupernetTrainConfig,
                   seed: int, run: RunDir, state: dict[str, Any] | None = None,
                   extra_state: Callable[[], dict[str, Any]] = dict,
                   on_epoch: Callable[[int], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Trains the supernet's weights on ``ds.train`` with paths from ``sampler``.

    Args:
        supernet: The supernet (trained in place, channels_last).
        ds: Dataset; weights train on ``ds.train``.
        sampler: Decisions of the paths of each step, from the step's generator.
        config: Settings.
        seed: Run seed (data order and paths).
        run: Run directory (history lines per epoch, atomic checkpoints) and its processes
            (``run.dist``: ``config.batch_size`` is the global batch, split among them).
        state: A checkpoint to resume from (``None``: start fresh).
        extra_state: Adds strategy state to every checkpoint.
        on_epoch: Called at each epoch end, before that epoch's history line and checkpoint, with the
            number of epochs done; returns extra fields of the history line (e.g. TNAS's sampler
            update, whose state ``extra_state`` then saves).

    Returns:
        The final training state (also the last checkpoint's ``supernet_train``).
    """
    res = supernet.resolution
    dist = run.dist
    if config.batch_size % dist.world_size:
        raise ValueError(f"batch size {config.batch_size} is not a multiple of the {dist.world_size} processes")
    device = next(supernet.parameters()).device
    per_epoch = num_batches(ds.train, batch_size=config.batch_size, drop_last=True)
    total = per_epoch * config.epochs
    if state is not None and state.get("supernet_train", {}).get("step", 0) >= total:
        return dict(state["supernet_train"])
    fresh = state is None or "supernet_train" not in state
    if fresh and config.candidate_init != supernet.init:
        torch.manual_seed(seed)
        supernet.initialize(config.candidate_init)
    split = min(total, int(config.shared_epochs * per_epoch)) if supernet.sharing == "separate" else 0
    step, loss_sum, correct, seen = 0, 0.0, 0, 0
    if not fresh:
        st = state["supernet_train"]
        step, loss_sum, correct, seen = st["step"], st["loss_sum"], st["correct"], st["seen"]
    net = supernet
    if step < split:  # the shared phase: an entangled twin trains first
        torch.manual_seed(seed)
        net = SuperNet(supernet.space, resolution=res, width_mult=supernet.width_mult,
                       num_classes=supernet.num_classes, sharing="entangled",
                       init=config.candidate_init).to(device, memory_format=torch.channels_last)
    if config.sandwich:
        sampler = sandwich(sampler, *extreme_paths(supernet))
    optimizer = make_sgd(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if not fresh:
        supernet.load_state_dict(state["supernet"])
        if net is not supernet:
            net.load_state_dict(state["shared_supernet"])
        optimizer.load_state_dict(state["optimizer"])
    net.train()

    def checkpoint() -> None:
        shared = {"shared_supernet": net.state_dict()} if net is not supernet else {}
        run.save_checkpoint({
            "phase": "supernet", "supernet": supernet.state_dict(), "optimizer": optimizer.state_dict(),
            "supernet_train": {"step": step, "loss_sum": loss_sum, "correct": correct, "seen": seen},
            **shared, **extra_state(),
        })

    bar = tqdm(total=total, initial=step, desc="supernet", unit="step", leave=False, dynamic_ncols=True)
    bn = contextlib.ExitStack()
    bn.enter_context(dist.batch_norm(supernet, net))
    while step < total:
        epoch, start = divmod(step, per_epoch)
        for x, y in batches(ds.train, ds, batch_size=config.batch_size, resolution=res, seed=seed, epoch=epoch,
                            start=start, drop_last=True, part=dist.part):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            torch.manual_seed(dist.seed(seed * 1_000_003 + step))  # dropout masks: a function of (seed, step) too
            set_lr(optimizer, cosine_lr(config.lr, step, total, warmup_steps=int(config.warmup_epochs * per_epoch)))
            optimizer.zero_grad(set_to_none=True)
            teacher = None
            step_sums = [0.0, 0, 0]  # this process's loss × examples, correct, examples
            for i, path in enumerate(sampler(step_rng(seed, step))):
                logits = net(x, path)
                ce = classification_loss(logits, y, label_smoothing=config.label_smoothing)
                loss = ce if teacher is None else distill_loss(logits, teacher)
                loss.backward()
                if config.sandwich and i == 0:
                    teacher = logits.detach()
                if config.sandwich and i < 2:  # the history counts the sampler's own paths only
                    continue
                step_sums[0] += float(ce.detach()) * len(y)
                step_sums[1] += int((logits.argmax(1) == y).sum())
                step_sums[2] += len(y)
            dist.average_gradients(net.parameters())
            optimizer.step()
            step_loss, step_correct, step_seen = dist.sum_floats(step_sums)  # over the global batch
            loss_sum, correct, seen = loss_sum + step_loss, correct + int(step_correct), seen + int(step_seen)
            step += 1
            if step == split:  # the candidates split (Few-shot NAS) and go on as separate parameters
                supernet.inherit(net)
                net = supernet
                optimizer = make_sgd(net.parameters(), lr=config.lr, momentum=config.momentum,
                                     weight_decay=config.weight_decay)
                net.train()
                bn.close()
                bn.enter_context(dist.batch_norm(net))
            bar.update(1)
            run.crash_point("supernet_step")
            if step % per_epoch == 0:
                extra = on_epoch(step // per_epoch) if on_epoch is not None else {}
                run.append_history({"phase": "supernet", "epoch": step // per_epoch, "step": step,
                                    "train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen),
                                    "lr": optimizer.param_groups[0]["lr"], **extra})
                loss_sum, correct, seen = 0.0, 0, 0
                checkpoint()
            elif step % config.checkpoint_every == 0:
                checkpoint()
            if step >= total:
                break
    bn.close()
    bar.close()
    return {"step": step, "loss_sum": 0.0, "correct": 0, "seen": 0}
