"""Datasets load offline with deterministic, disjoint splits; bad datasets exit 2."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from hwnas.errors import InputError
from hwnas.train.data import batches, epoch_order, load_dataset, num_batches, preprocess


def _ids(split):
    return {hash(img.numpy().tobytes()) for img in split.images}


def test_digits_splits():
    ds = load_dataset("digits", seed=0)
    assert ds.num_classes == 10
    assert len(ds.train) + len(ds.arch) + len(ds.val) == 1797
    assert len(ds.val) == 359 and abs(len(ds.train) - len(ds.arch)) <= 1
    again = load_dataset("digits", seed=0)
    assert torch.equal(again.train.labels, ds.train.labels)
    other = load_dataset("digits", seed=1)
    assert torch.equal(other.val.labels, ds.val.labels)  # held-out split does not depend on the seed
    assert not torch.equal(other.train.labels, ds.train.labels)


def test_splits_are_disjoint():
    ds = load_dataset("digits", seed=3)
    content = lambda s: {tuple(x) for x in s.images.flatten(1).tolist()}  # noqa: E731
    train, arch, val = content(ds.train), content(ds.arch), content(ds.val)
    # all 1,797 digits images are distinct (as stored: 8x8, 0..255), so the splits share none by content
    assert len(train) == len(ds.train) and len(arch) == len(ds.arch) and len(val) == len(ds.val)
    assert len(train | arch | val) == 1797
    assert train & val == set() and train & arch == set() and arch & val == set()


def test_batches_shapes_and_resume():
    ds = load_dataset("digits", seed=0)
    all_b = list(batches(ds.train, ds, batch_size=64, resolution=32, seed=5, epoch=2))
    assert len(all_b) == num_batches(ds.train, batch_size=64)
    x, y = all_b[0]
    assert x.shape == (64, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    assert y.dtype == torch.int64
    resumed = list(batches(ds.train, ds, batch_size=64, resolution=32, seed=5, epoch=2, start=3))
    assert torch.equal(resumed[0][0], all_b[3][0])
    assert not torch.equal(epoch_order(100, seed=5, epoch=2), epoch_order(100, seed=5, epoch=3))


def test_preprocess_normalizes():
    ds = load_dataset("digits")
    x = preprocess(ds.train.images, resolution=8, mean=ds.mean, std=ds.std)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def test_fashion_mnist_from_folder(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (40, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(40) % 10)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (10, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    ds = load_dataset(f"fashion-mnist:{tmp_path}")
    assert len(ds.val) == 10 and len(ds.train) == 20 and ds.num_classes == 10
    assert ds.train.images.shape[1:] == (1, 28, 28)


def test_fashion_mnist_malformed(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"garbage!"))
    with pytest.raises(InputError, match="IDX"):
        load_dataset(f"fashion-mnist:{tmp_path}")
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(f"fashion-mnist:{tmp_path / 'nope'}")


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 255, (6, 3072), dtype=np.uint8), b"labels": list(range(6))}
        (tmp_path / name).write_bytes(pickle.dumps(d))
    ds = load_dataset(f"cifar10:{tmp_path}")
    assert len(ds.val) == 6 and len(ds.train) + len(ds.arch) == 30 and ds.train.images.shape[1:] == (3, 32, 32)


def test_imagefolder(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 30, 3), 40 * i, dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", folder_size=16)
    assert ds.num_classes == 2 and len(ds.val) == 2 and ds.train.images.shape[1:] == (3, 16, 16)


@pytest.mark.parametrize("spec", ["mnist", "cifar10", "imagefolder", "digits:extra"])
def test_unknown_spec(spec):
    with pytest.raises(InputError, match="--data"):
        load_dataset(spec)


def test_atomic_write_uses_normal_permissions(tmp_path):
    import os

    from hwnas.jsonio import write_json_atomic

    umask = os.umask(0o022)
    try:
        p = write_json_atomic(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (p.stat().st_mode & 0o777) == 0o644
    assert not list(tmp_path.glob(".x.json.*"))  # no temp file left behind
