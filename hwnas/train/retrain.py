"""Standalone training of one architecture from scratch (``hwnas train``), resumable per epoch.

Built on the primitives of ``hwnas.train``: SGD with Nesterov momentum (``make_sgd``), a cosine
learning-rate schedule per step (``cosine_lr``), optional label smoothing (``classification_loss``,
Szegedy et al., 2016, Sec. 7), channels_last tensors throughout. The network trains on the
dataset's ``trainval`` split (``train`` + ``arch``) and is evaluated on the held-out ``val`` split
after every epoch.

Run folder (``--out DIR``)::

    DIR/config.json      arch + training settings (written at the start)
    DIR/checkpoint.pt    after every epoch, atomically: weights, optimizer, RNG, history
    DIR/history.jsonl    one line per finished epoch
    DIR/summary.json     final held-out accuracy (written at the end)

Because batch order is a pure function of (seed, epoch) and the RNG state is checkpointed, a run
stopped after any epoch and resumed with ``--resume`` ends with bit-identical weights on the same
machine and thread count.

Under ``torchrun`` (``dist``, ``hwnas.train.distributed``) each process trains on its share of every
global batch of ``batch_size`` examples with BatchNorm over the global batch and averaged gradients,
and evaluates the whole held-out split itself (identical weights: identical numbers); rank 0 alone
writes the folder. Dropout masks come from the same seeded stream on every process.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from hwnas.errors import InputError
from hwnas.jsonio import atomic_write_bytes, write_json_atomic
from hwnas.safeio import check_output_dir
from hwnas.space import SearchSpace, build_model
from hwnas.train.checkpoint import load_checkpoint, save_checkpoint
from hwnas.train.data import Dataset, batches, load_dataset, num_batches
from hwnas.train.distributed import SINGLE_PROCESS, Distributed
from hwnas.train.loop import classification_loss, cosine_lr, evaluate, make_sgd, set_lr

CHECKPOINT_FORMAT = "hwnas.train_checkpoint/1"


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all recorded in ``config.json`` and the checkpoint).

    Attributes:
        data: Dataset spec (``hwnas.train.data.load_dataset``).
        epochs: Passes over the ``trainval`` split.
        batch_size: Examples per SGD step.
        lr: Peak learning rate of the cosine schedule.
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 penalty on weights with more than one dimension.
        label_smoothing: Label-smoothing factor in [0, 1).
        seed: Seed of the initialization, the data split and the batch order.
        data_limit: Keep at most this many examples per split (quick runs); None for all.
    """

    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.0
    seed: int = 0
    data_limit: int | None = None

    def validate(self) -> None:
        """Raises ``InputError`` naming the first out-of-range setting."""
        positive_ints = {"epochs": self.epochs, "batch_size": self.batch_size}
        for name, v in positive_ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr must be a positive number, got {self.lr!r}.")
        if not (0.0 <= self.momentum < 1.0):
            raise InputError(f"--momentum must be in [0, 1), got {self.momentum!r}.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError(f"--weight-decay must be a non-negative number, got {self.weight_decay!r}.")
        if not (0.0 <= self.label_smoothing < 1.0):
            raise InputError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}.")
        if self.data_limit is not None and self.data_limit < 1:
            raise InputError(f"--data-limit must be a positive integer, got {self.data_limit!r}.")


@dataclass(frozen=True)
class TrainResult:
    """Outcome of ``train_arch``: held-out top-1 accuracy (fraction) and loss of the final weights."""

    accuracy: float
    loss: float
    count: int
    epochs: int
    checkpoint: Path
    history: tuple[dict[str, Any], ...]


def preprocessing_record(ds: Dataset, *, resolution: int) -> dict[str, Any]:
    """How to turn a stored image into the network input (recorded in checkpoints, ONNX metadata
    and model cards so a deployment reproduces ``hwnas.train.data.preprocess`` exactly).

    ``input[c] = (pixel / 255 - mean[c]) / std[c]`` per stored channel, resized to
    ``resolution`` x ``resolution``; a single stored (grayscale) channel is repeated to 3.
    """
    stored = len(ds.mean)
    return {
        "dataset": ds.name,
        "resolution": resolution,
        "layout": "NCHW",
        "dtype": "float32",
        "scale": "pixel / 255",
        "mean": [float(v) for v in ds.mean],
        "std": [float(v) for v in ds.std],
        "stored_channels": stored,
        "channels": 3,
        "grayscale_to_rgb": "repeat" if stored == 1 else None,
        "resize": "bilinear, align_corners=False, antialiased when downscaling",
    }


def _check_resumable(state: Any, *, arch: dict[str, Any], config: TrainConfig, path: Path) -> None:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not a hwnas training checkpoint (format {CHECKPOINT_FORMAT}).")
    if state.get("arch") != arch:
        raise InputError(f"{path} was written for another architecture; use the same --arch to resume.")
    saved = state.get("config", {})
    for f in fields(TrainConfig):
        if saved.get(f.name) != getattr(config, f.name):
            flag = f"--{f.name.replace('_', '-')}"
            raise InputError(f"{flag} is {getattr(config, f.name)!r}, but the run in {path.parent} was started "
                             f"with {saved.get(f.name)!r}; resume with the same settings.")


def _open_run(out: Path, *, arch: dict[str, Any], config: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """Checks the run folder (rank 0) and reads the checkpoint to resume from, if any."""
    check_output_dir(out)
    ckpt_path = out / "checkpoint.pt"
    if not ckpt_path.exists():
        return None
    if not resume:
        raise InputError(f"--out {out} already holds a training run (checkpoint.pt); pass --resume to continue "
                         f"it or choose another folder.")
    state = load_checkpoint(ckpt_path, what="training checkpoint")
    _check_resumable(state, arch=arch, config=config, path=ckpt_path)
    return state


def _make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out} cannot be written ({exc.strerror or exc}).") from None


def train_arch(space: SearchSpace, arch: dict[str, Any], *, config: TrainConfig, out_dir: str | Path,
               resume: bool = False, progress: bool = True,
               on_epoch_end: Callable[[int], None] | None = None,
               dist: Distributed = SINGLE_PROCESS) -> TrainResult:
    """Trains ``arch`` from scratch and evaluates it on the held-out split.

    Args:
        space: The architecture's space.
        arch: A validated architecture (decides resolution, width and number of classes).
        config: Training settings.
        out_dir: Run folder (see the module docstring).
        resume: Continue from ``out_dir/checkpoint.pt`` (start fresh when there is none).
        progress: Show a tqdm bar on stderr.
        on_epoch_end: Called with the number of finished epochs after each checkpoint is written.
        dist: The processes of a data-parallel run (``config.batch_size`` is the global batch).

    Returns:
        The final held-out accuracy and the checkpoint path.

    Raises:
        InputError: bad settings, a dataset whose class count differs from ``num_classes``, an
            existing run without ``resume``, a checkpoint from other settings, an unwritable folder.
    """
    config.validate()
    if config.batch_size % dist.world_size:
        raise InputError(f"--batch-size: the global batch {config.batch_size} is not a multiple of the "
                         f"{dist.world_size} processes.")
    out = Path(out_dir)
    ckpt_path = out / "checkpoint.pt"
    state = dist.agree(lambda: _open_run(out, arch=arch, config=config, resume=resume))
    ds = load_dataset(config.data, seed=config.seed, limit=config.data_limit)
    if ds.num_classes != arch["num_classes"]:
        raise InputError(f"--data {config.data} has {ds.num_classes} classes, but the architecture has "
                         f"num_classes {arch['num_classes']} (set it with --num-classes or in the arch file).")
    if len(ds.trainval) < dist.world_size:
        raise InputError(f"--data-limit: {len(ds.trainval)} training examples cannot be shared by "
                         f"{dist.world_size} processes.")
    dist.agree(lambda: _make_folder(out))
    resolution = int(arch["resolution"])
    preprocessing = preprocessing_record(ds, resolution=resolution)

    torch.manual_seed(config.seed)
    model = build_model(space.resolve(arch)).to(dist.device, memory_format=torch.channels_last)
    opt = make_sgd(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    start_epoch, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
    elif dist.is_main:
        write_json_atomic(out / "config.json", {"arch": arch, "train": asdict(config)})

    split = ds.trainval
    drop_last = len(split) >= config.batch_size  # no 1-example batch reaching BatchNorm
    steps_per_epoch = num_batches(split, batch_size=config.batch_size, drop_last=drop_last)
    total_steps = steps_per_epoch * config.epochs
    bar = tqdm(total=total_steps, initial=start_epoch * steps_per_epoch, desc="train", unit="step",
               file=sys.stderr, disable=not (progress and dist.is_main), dynamic_ncols=True)
    bn = contextlib.ExitStack()
    try:
        bn.enter_context(dist.batch_norm(model))
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            model.train()
            loss_sum, correct, seen, lr = 0.0, 0, 0, config.lr
            for i, (x, y) in enumerate(batches(split, ds, batch_size=config.batch_size, resolution=resolution,
                                               seed=config.seed, epoch=epoch, drop_last=drop_last, part=dist.part)):
                x, y = x.to(dist.device, non_blocking=True), y.to(dist.device, non_blocking=True)
                lr = cosine_lr(config.lr, epoch * steps_per_epoch + i, total_steps)
                set_lr(opt, lr)
                logits = model(x)  # N, classes
                loss = classification_loss(logits, y, label_smoothing=config.label_smoothing)
                opt.zero_grad(set_to_none=True)
                share = int(y.numel()) * dist.world_size / min(config.batch_size, len(split) - i * config.batch_size)
                (loss * share if share != 1 else loss).backward()  # unequal shares of a last batch weigh by size
                dist.average_gradients(model.parameters())
                opt.step()
                loss_value = float(loss.detach())
                loss_sum += loss_value * int(y.numel())
                correct += int((logits.detach().argmax(1) == y).sum())
                seen += int(y.numel())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.3f}", refresh=False)
            loss_sum, correct, seen = dist.sum_floats([loss_sum, correct, seen])  # over the global batches
            ev = evaluate(model, ds.val, ds, resolution=resolution)
            history.append({"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(1, seen),
                            "train_accuracy": correct / max(1, seen), "val_loss": ev.loss,
                            "val_accuracy": ev.accuracy, "seconds": round(time.perf_counter() - t0, 3)})
            if dist.is_main:
                save_checkpoint(ckpt_path, {
                    "format": CHECKPOINT_FORMAT, "arch": arch, "config": asdict(config), "epoch": epoch + 1,
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                    "history": history, "preprocessing": preprocessing, "accuracy": ev.accuracy,
                })
                lines = "".join(json.dumps(h) + "\n" for h in history)
                atomic_write_bytes(out / "history.jsonl", lines.encode())
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)
    finally:
        bn.close()
        bar.close()

    final = evaluate(model, ds.val, ds, resolution=resolution)
    if dist.is_main:
        write_json_atomic(out / "summary.json", {
            "arch": arch, "data": config.data, "epochs": config.epochs, "accuracy": final.accuracy,
            "loss": final.loss, "val_count": final.count, "checkpoint": str(ckpt_path),
        })
    return TrainResult(accuracy=final.accuracy, loss=final.loss, count=final.count, epochs=config.epochs,
                       checkpoint=ckpt_path, history=tuple(history))
