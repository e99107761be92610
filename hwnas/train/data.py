"""Datasets that work offline, deterministic splits, and resumable batching.

Specs (``--data``):

* ``digits`` (default): scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).
* ``fashion-mnist[:DIR]``: gzipped IDX files, by default from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).
* ``cifar10:DIR``: the standard CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``).
* ``imagefolder:DIR``: ``DIR/<class>/*.png|jpg``; ``DIR/train`` and ``DIR/val`` are used when present.

Every dataset has three splits: ``train`` (weights), ``arch`` (architecture validation, carved out
of the training set with the run's seed) and ``val`` (held out; fixed, independent of the seed).
Images are kept as uint8 at their native size and resized per batch to the run's resolution.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.errors import InputError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_HELD_OUT_SEED = 12345  # the held-out split never depends on a run's seed


@dataclass(frozen=True)
class Split:
    """Images (N, C, H, W uint8) and labels (N, int64)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Dataset:
    """A dataset with its three splits and normalization (per stored channel, on [0, 1] pixels)."""

    name: str
    train: Split
    arch: Split
    val: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def trainval(self) -> Split:
        """``train`` and ``arch`` together (for training a final architecture from scratch)."""
        return Split(torch.cat([self.train.images, self.arch.images]), torch.cat([self.train.labels, self.arch.labels]))


def _split_train(images: torch.Tensor, labels: torch.Tensor, seed: int, arch_fraction: float) -> tuple[Split, Split]:
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_arch = int(round(len(labels) * arch_fraction))
    a, t = perm[:n_arch], perm[n_arch:]
    return Split(images[t], labels[t]), Split(images[a], labels[a])


def _held_out(images: torch.Tensor, labels: torch.Tensor, fraction: float) -> tuple[tuple[torch.Tensor, torch.Tensor], Split]:
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_HELD_OUT_SEED))
    n_val = int(round(len(labels) * fraction))
    v, rest = perm[:n_val], perm[n_val:]
    return (images[rest], labels[rest]), Split(images[v], labels[v])


def _limit(split: Split, n: int | None) -> Split:
    return split if n is None or len(split) <= n else Split(split.images[:n], split.labels[:n])


def _load_digits() -> tuple[torch.Tensor, torch.Tensor, None, None]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # N, 1, 8, 8
    return torch.from_numpy(images), torch.from_numpy(d.target.astype(np.int64)), None, None


def _read_idx(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"dataset file {path} does not exist.")
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            raw = fh.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise InputError(f"dataset file {path} is not a valid IDX file ({exc}).") from None


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".gz", ""):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    raise InputError(f"dataset folder {folder} has no {stem}[.gz] (install the Debian package dataset-fashion-mnist "
                     f"or pass fashion-mnist:DIR with the four IDX files).")


def _load_fashion(folder: Path):
    if not folder.is_dir():
        raise InputError(f"Fashion-MNIST folder {folder} does not exist (apt-get install dataset-fashion-mnist, "
                         f"or pass fashion-mnist:DIR).")
    xtr = _read_idx(_find(folder, "train-images-idx3-ubyte"))
    ytr = _read_idx(_find(folder, "train-labels-idx1-ubyte"))
    xte = _read_idx(_find(folder, "t10k-images-idx3-ubyte"))
    yte = _read_idx(_find(folder, "t10k-labels-idx1-ubyte"))
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise InputError(f"Fashion-MNIST folder {folder}: image and label counts differ.")
    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731  (a writable copy)
    return t(xtr[:, None]), t(ytr.astype(np.int64)), t(xte[:, None]), t(yte.astype(np.int64))


def _load_cifar10(folder: Path):
    if not folder.is_dir():
        raise InputError(f"CIFAR-10 folder {folder} does not exist.")

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        p = folder / name
        if not p.is_file():
            raise InputError(f"CIFAR-10 folder {folder} has no {name} (expected the python batches).")
        try:
            with open(p, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")  # the standard CIFAR-10 python format
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            return x, np.asarray(d[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise InputError(f"CIFAR-10 file {p} is malformed ({exc}).") from None

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = batch("test_batch")
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


def _load_imagefolder(folder: Path, size: int):
    from PIL import Image

    if not folder.is_dir():
        raise InputError(f"image folder {folder} does not exist.")

    def read(root: Path, classes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for ci, c in enumerate(classes):
            for f in sorted((root / c).iterdir()):
                if f.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
                    continue
                try:
                    img = Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)
                except OSError as exc:
                    raise InputError(f"image {f} cannot be read ({exc}).") from None
                xs.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
                ys.append(ci)
        if not xs:
            raise InputError(f"image folder {root} has no images in class folders.")
        return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64)

    train_root = folder / "train" if (folder / "train").is_dir() else folder
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise InputError(f"image folder {train_root} needs at least two class subfolders.")
    xtr, ytr = read(train_root, classes)
    for held in ("val", "test"):
        if (folder / held).is_dir() and train_root != folder:
            xte, yte = read(folder / held, classes)
            return xtr, ytr, xte, yte
    return xtr, ytr, None, None


def load_dataset(spec: str, *, seed: int = 0, limit: int | None = None, arch_fraction: float = 0.5,
                 folder_size: int = 64) -> Dataset:
    """Loads a dataset by spec and splits it (see the module docstring).

    Args:
        spec: ``digits``, ``fashion-mnist[:DIR]``, ``cifar10:DIR`` or ``imagefolder:DIR``.
        seed: Seed of the train/arch split (the held-out split is fixed).
        limit: Keep at most this many examples per split (quick runs).
        arch_fraction: Share of the training set used as the architecture-validation split.
        folder_size: Side images of an image folder are resized to when loaded, pixels.

    Raises:
        InputError: for an unknown spec or a missing or malformed dataset.
    """
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        xtr, ytr, xte, yte = _load_digits()
    elif kind == "fashion-mnist":
        xtr, ytr, xte, yte = _load_fashion(Path(arg) if arg else FASHION_MNIST_DIR)
    elif kind == "cifar10" and arg:
        xtr, ytr, xte, yte = _load_cifar10(Path(arg))
    elif kind == "imagefolder" and arg:
        xtr, ytr, xte, yte = _load_imagefolder(Path(arg), folder_size)
    else:
        raise InputError(f"--data {spec!r} is not a dataset spec (digits, fashion-mnist[:DIR], cifar10:DIR, imagefolder:DIR).")
    if xte is None:
        (xtr, ytr), val = _held_out(xtr, ytr, 0.2)
    else:
        val = Split(xte, yte)
    train, arch = _split_train(xtr, ytr, seed, arch_fraction)
    train, arch, val = _limit(train, limit), _limit(arch, limit), _limit(val, limit)
    pixels = train.images.float().div_(255.0)
    mean = tuple(float(v) for v in pixels.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in pixels.std(dim=(0, 2, 3)))
    num_classes = int(max(int(ytr.max()), int(val.labels.max())) + 1)
    return Dataset(name=spec, train=train, arch=arch, val=val, num_classes=num_classes, mean=mean, std=std)


def preprocess(images: torch.Tensor, *, resolution: int, mean: tuple[float, ...], std: tuple[float, ...],
               channels: int = 3) -> torch.Tensor:
    """uint8 N, C, H, W → normalized float N, channels, R, R (channels_last); grayscale is repeated."""
    x = images.float().div_(255.0)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > resolution)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    x = (x - m) / s
    if x.shape[1] == 1 and channels != 1:
        x = x.expand(-1, channels, -1, -1)
    return x.contiguous(memory_format=torch.channels_last)


def epoch_order(n: int, *, seed: int, epoch: int) -> torch.Tensor:
    """The example order of one epoch: a permutation that depends only on (seed, epoch), so resumable."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def batches(split: Split, ds: Dataset, *, batch_size: int, resolution: int, seed: int = 0, epoch: int = 0,
            shuffle: bool = True, start: int = 0, drop_last: bool = False,
            part: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yields (images N, 3, R, R float channels_last; labels N) batches of one epoch.

    Args:
        split: The split to iterate.
        ds: Its dataset (normalization).
        batch_size: Examples per batch.
        resolution: Side of the network input, pixels.
        seed: With ``epoch``, fixes the order (``epoch_order``).
        epoch: Epoch index.
        shuffle: Shuffle (training) or keep the stored order (evaluation).
        start: Skip the first ``start`` batches (resuming mid-epoch).
        drop_last: Drop a final incomplete batch.
        part: (r, P): yield only the examples r, r + P, r + 2P, ... of each batch of ``batch_size``
            (process r of P in a data-parallel run, ``hwnas.train.distributed``); the batches and
            their order are those of one process, so the P parts of a step make its whole batch.
    """
    rank, parts = part
    n = len(split)
    order = epoch_order(n, seed=seed, epoch=epoch) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(start * batch_size, stop, batch_size):
        idx = order[i : i + batch_size][rank::parts]
        x = preprocess(split.images[idx], resolution=resolution, mean=ds.mean, std=ds.std)
        yield x, split.labels[idx]


def num_batches(split: Split, *, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches ``batches`` yields for one epoch."""
    n = len(split)
    return n // batch_size if drop_last else -(-n // batch_size)
