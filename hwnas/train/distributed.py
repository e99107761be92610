"""One process or many: the data-parallel service of the training loops and the run directory.

``torchrun --nproc_per_node=N -m hwnas search ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; ``init_distributed`` joins them into one
process group (gloo for CPU tensors, NCCL for CUDA ones, ``--dist-backend`` to override) and
returns a ``Distributed``, passed explicitly to whatever needs it (the run directory carries it to
the training loops: ``RunDir.dist``). Without torchrun it is ``SINGLE_PROCESS``, whose operations
are identities, so every command runs unchanged on one process.

The rules a data-parallel run follows (the same as PyTorch DDP's, so a run on N processes with
per-process batch B is the run of one process with batch N·B, up to floating-point rounding):

* **Batches.** ``--batch-size`` is the batch of one process; the global batch is N × it. The data
  order is global (``hwnas.train.data.epoch_order`` of (seed, epoch)) and process r takes the
  examples r, r+N, r+2N, ... of each global batch (``batches(..., part=dist.part)``: what
  ``DistributedSampler`` does with the same permutation), so the step count does not depend on N
  and a run can resume on another N with the same global batch.
* **Learning rate.** ``--lr`` is the rate of the averaged (global-batch) gradient. Raising N at a
  fixed per-process batch multiplies the global batch; scale ``--lr`` by the same factor, with a
  warm-up (the linear scaling rule, Goyal et al., "Accurate, Large Minibatch SGD", 2017, Sec. 2.1
  and 2.2).
* **Same step everywhere.** Paths, Gumbel samples and architecture steps come from generators of
  (seed, step) (``hwnas.supernet.step_rng``), so every process samples the same path at the same
  step; dropout and DropBlock masks draw from a per-process stream (``seed``).
* **Gradients.** After a step's backward passes, the gradients that exist are averaged across
  processes by one bucketed all-reduce (``average_gradients``), before the optimizer step: for the
  weights and for the architecture parameters alike. This is what ``DistributedDataParallel``
  does, made explicit: supernets run one path per step (DDP would need
  ``find_unused_parameters``), DNAS strategies call ``weighted_forward`` and gated forwards rather
  than ``forward`` (DDP's hooks would not see them), and DARTS's second-order step takes gradients
  with ``torch.autograd.grad`` (which DDP never synchronizes). Parameters therefore stay
  bit-identical across processes.
* **BatchNorm** normalizes over the global batch in training loops
  (``hwnas.train.cross_rank_bn``).
* **Writes.** Only rank 0 writes (``RunDir``); the others write into a private scratch folder.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import torch
import torch.distributed as tdist
from torch import nn

from hwnas.errors import InputError
from hwnas.train.cross_rank_bn import batch_norm_across_ranks

T = TypeVar("T")
R = TypeVar("R")

#: ``--dist-backend`` values.
DIST_BACKENDS = ("auto", "gloo", "nccl")
#: ``--train-device`` values.
TRAIN_DEVICES = ("auto", "cpu", "cuda")
#: Elements per gradient all-reduce bucket (64 MiB of float32).
BUCKET = 1 << 24


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run (see the module docstring).

    Attributes:
        rank: This process's index, 0 ... world_size − 1 (0 writes the run directory).
        world_size: Number of processes N.
        local_rank: Index on this machine (its GPU).
        backend: ``gloo`` or ``nccl``; None without a process group (one process, no torchrun).
        device: Where this process trains (``cpu``, ``cuda:LOCAL_RANK``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run (rank 0)."""
        return self.rank == 0

    @property
    def part(self) -> tuple[int, int]:
        """(rank, world_size): this process's share of each global batch (``batches(part=...)``)."""
        return self.rank, self.world_size

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's items: ``items[rank::world_size]``."""
        return list(items[self.rank::self.world_size])

    def seed(self, base: int) -> int:
        """A per-process seed from a shared one (dropout masks): ``base`` itself for one process."""
        return int(base) * self.world_size + self.rank

    # ---- collectives ---------------------------------------------------------------------------

    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the device the backend moves (NCCL: this GPU; gloo: the CPU)."""
        return t.to(self.device) if self.backend == "nccl" else t.cpu()

    def average_(self, tensors: Iterable[torch.Tensor | None]) -> None:
        """Replaces each tensor by its mean over processes.

        ``None`` entries are skipped; every process must pass the same shapes in the same order.
        Tensors are flattened into buckets of ``BUCKET`` elements per dtype, one all-reduce each.
        """
        ts = [t for t in tensors if t is not None]
        if self.backend is None or not ts:
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in ts:
            by_dtype.setdefault(t.dtype, []).append(t)
        for group in by_dtype.values():
            buckets: list[list[torch.Tensor]] = [[]]
            size = 0
            for t in group:
                if buckets[-1] and size + t.numel() > BUCKET:
                    buckets.append([])
                    size = 0
                buckets[-1].append(t)
                size += t.numel()
            for bucket in buckets:
                flat = self._comm(torch.cat([b.reshape(-1) for b in bucket]))
                tdist.all_reduce(flat)
                flat.div_(self.world_size)
                offset = 0
                for b in bucket:
                    b.copy_(flat[offset:offset + b.numel()].view(b.shape))
                    offset += b.numel()

    def average_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Averages the gradients that exist (``grad`` not None) over processes, in place.

        Every process ran the same paths, so the same parameters have gradients everywhere. With
        unequal shares of one batch, scale each process's loss by n_local·N / n_global first.
        """
        self.average_(p.grad for p in params)

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over processes (float64)."""
        if self.backend is None:
            return [float(v) for v in values]
        t = self._comm(torch.tensor([float(v) for v in values], dtype=torch.float64))
        tdist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def mean_floats(self, values: Sequence[float]) -> list[float]:
        """Element-wise means over processes (float64)."""
        return [v / self.world_size for v in self.sum_floats(values)]

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every process (pickled)."""
        if self.backend is None:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on rank 0 only and hands its result to every process.

        For what only rank 0 may do (check and create the run directory, read a checkpoint, time
        on the device). An ``InputError`` on rank 0 is raised on every process with the same
        sentence; another failure as a ``RuntimeError`` naming it.
        """
        if self.backend is None:
            return fn()
        outcome, exc = _attempt(fn) if self.is_main else (None, None)
        outcome = self.broadcast(outcome)
        if exc is not None:
            raise exc
        return _unwrap(outcome, rank=0)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]`` with the items shared out round-robin and the results gathered
        in order on every process (sharded candidate scoring)."""
        if self.backend is None:
            return [fn(x) for x in items]
        mine = range(self.rank, len(items), self.world_size)
        outcome, exc = _attempt(lambda: {i: fn(items[i]) for i in mine})
        gathered: list[Any] = [None] * self.world_size
        tdist.all_gather_object(gathered, outcome)
        if exc is not None:
            raise exc
        merged: dict[int, R] = {}
        for rank, o in enumerate(gathered):
            merged.update(_unwrap(o, rank=rank))
        return [merged[i] for i in range(len(items))]

    def barrier(self) -> None:
        if self.backend is not None:
            tdist.barrier()

    @contextlib.contextmanager
    def batch_norm(self, *modules: nn.Module) -> Iterator[None]:
        """BatchNorm over the global batch inside the block (``batch_norm_across_ranks``)."""
        with batch_norm_across_ranks(*modules):
            yield

    def record(self) -> dict[str, Any]:
        """How the run was launched (``config.json``'s and ``summary.json``'s ``launch``)."""
        return {"processes": self.world_size, "backend": self.backend, "train_device": self.device,
                "torchrun": self.backend is not None}


#: One process, no process group: every collective is the identity.
SINGLE_PROCESS = Distributed()


def _attempt(fn: Callable[[], Any]) -> tuple[tuple[str, Any], BaseException | None]:
    """(("ok", result) or ("input" | "error", message), the exception to re-raise here or None)."""
    try:
        return ("ok", fn()), None
    except InputError as exc:
        return ("input", str(exc)), exc
    except Exception as exc:  # noqa: BLE001 - every failure must reach the other processes
        return ("error", f"{type(exc).__name__}: {exc}"), exc


def _unwrap(outcome: tuple[str, Any], *, rank: int) -> Any:
    kind, value = outcome
    if kind == "ok":
        return value
    if kind == "input":
        raise InputError(value)
    raise RuntimeError(f"process {rank} failed: {value}")


def launched_by_torchrun(env: Mapping[str, str]) -> bool:
    """Whether torchrun (or another launcher with its variables) started this process."""
    return all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def init_distributed(*, backend: str = "auto", device: str = "auto",
                     env: Mapping[str, str] | None = None) -> Distributed:
    """This process's ``Distributed``: a process group when torchrun started it, else one process.

    Args:
        backend: ``auto`` (NCCL for CUDA, gloo for the CPU), ``gloo`` or ``nccl`` (``--dist-backend``).
        device: ``auto`` (CUDA when a GPU is visible), ``cpu`` or ``cuda`` (``--train-device``);
            under torchrun the process takes GPU ``LOCAL_RANK``.
        env: The environment (default ``os.environ``).

    Raises:
        InputError: an unknown value, ``cuda`` without a GPU, NCCL without CUDA, too few GPUs.
    """
    env = os.environ if env is None else env
    if backend not in DIST_BACKENDS:
        raise InputError(f"--dist-backend must be one of {', '.join(DIST_BACKENDS)}, got {backend!r}.")
    if device not in TRAIN_DEVICES:
        raise InputError(f"--train-device must be one of {', '.join(TRAIN_DEVICES)}, got {device!r}.")
    launched = launched_by_torchrun(env)
    local_rank = int(env.get("LOCAL_RANK", "0")) if launched else 0
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--train-device cuda: no CUDA GPU is visible to this process.")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    where = "cpu"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"--train-device cuda: process LOCAL_RANK {local_rank} needs GPU {local_rank}, but "
                             f"{torch.cuda.device_count()} are visible; start at most that many per node.")
        torch.cuda.set_device(local_rank)
        where = f"cuda:{local_rank}"
    chosen = ("nccl" if cuda else "gloo") if backend == "auto" else backend
    if chosen == "nccl" and not cuda:
        raise InputError("--dist-backend nccl moves CUDA tensors only; train on a GPU (--train-device cuda) or "
                         "use --dist-backend gloo.")
    if not launched:
        return Distributed(device=where)
    if chosen == "nccl" and not tdist.is_nccl_available():
        raise InputError("--dist-backend nccl: this PyTorch build has no NCCL.")
    if not tdist.is_initialized():
        kw = {"device_id": torch.device(where)} if chosen == "nccl" else {}
        tdist.init_process_group(chosen, **kw)
    return Distributed(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank,
                       backend=chosen, device=where)


def is_main_process() -> bool:
    """Whether this process prints the command's report: rank 0, or the only process."""
    return not (tdist.is_available() and tdist.is_initialized()) or tdist.get_rank() == 0


def shutdown() -> None:
    """Leaves the process group, if one was joined (at the end of a command)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
