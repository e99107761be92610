"""Checkpoints: atomic save, weights-only load, one clear sentence for a bad file; weights that do not fit."""

from __future__ import annotations

import collections
import re

import pytest
import torch

from hwnas.errors import InputError
from hwnas.space.build import build_model
from hwnas.train.checkpoint import load_checkpoint, save_checkpoint
from hwnas.train.weights import check_fit, check_same_arch, load_weights, read_weights, state_dict_of


def test_round_trip_and_no_temp_files_left(tmp_path):
    obj = {"epoch": 3, "model": {"w": torch.arange(6.0).reshape(2, 3)}, "history": [{"loss": 0.5}], "none": None}
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", obj)
    assert path == tmp_path / "sub" / "ckpt.pt"
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # the temp file was renamed, not left
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["history"] == [{"loss": 0.5}] and back["none"] is None
    assert torch.equal(back["model"]["w"], obj["model"]["w"])
    save_checkpoint(path, {"epoch": 4})  # overwrite in place
    assert load_checkpoint(path) == {"epoch": 4}


@pytest.mark.parametrize("content", [b"", b"hello world", b"PK\x03\x04 truncated zip"])
def test_corrupt_file_is_input_error_naming_it(tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.pt is not a readable PyTorch checkpoint"):
        load_checkpoint(bad, what="--weights file")


def test_truncated_checkpoint_is_input_error(tmp_path):
    good = save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(100)})
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="c.pt"):
        load_checkpoint(good)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"^checkpoint .*nope\.pt does not exist\.$"):
        load_checkpoint(tmp_path / "nope.pt")


class Evil:  # an arbitrary pickled object: a weights-only load must refuse it
    pass


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(InputError, match="evil.pt"):
        load_checkpoint(path)


def test_state_dict_of_accepts_checkpoint_or_plain_state_dict():
    sd = {"a": torch.zeros(2)}
    assert state_dict_of({"model": sd, "epoch": 1}, source="f") == sd
    assert state_dict_of(sd, source="f") == sd
    with pytest.raises(InputError, match="neither a hwnas checkpoint nor a state_dict"):
        state_dict_of({"epoch": 1}, source="f")
    with pytest.raises(InputError):
        state_dict_of(collections.OrderedDict(), source="f")


def test_first_mismatching_tensor_is_named(toy_space):
    big = build_model(toy_space.resolve(toy_space.preset("big")))  # l1 = k5
    small = build_model(toy_space.resolve(toy_space.preset("small")))  # l1 = k3, l2/l3 skipped
    # the first tensor in module order that differs: block 1 (l1), its depthwise 5x5 vs 3x3 kernel
    expected = (r"^w\.pt does not fit the architecture: tensor blocks\.1\.\S+\.weight has shape \(16, 1, 3, 3\) "
                r"in the file but \(16, 1, 5, 5\) in the architecture\.$")
    with pytest.raises(InputError, match=expected):
        check_fit(big, small.state_dict(), source="w.pt")
    sd = dict(big.state_dict())
    stem_var = next(k for k in sd if k.startswith("blocks.0.") and k.endswith("running_var"))  # stem BN, 8 channels
    del sd[stem_var]
    with pytest.raises(InputError, match=rf"tensor {re.escape(stem_var)} \(8\) is missing"):
        load_weights(big, sd, source="w.pt")
    sd = {**big.state_dict(), "extra.weight": torch.zeros(1)}
    with pytest.raises(InputError, match=r"extra tensor extra\.weight"):
        load_weights(big, sd, source="w.pt")
    other = build_model(toy_space.resolve(toy_space.preset("big")))
    load_weights(other, big.state_dict(), source="w.pt")
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), big.state_dict().values()))


def test_same_shapes_other_choices_refused(toy_space):
    a = toy_space.preset("big")
    b = {**a, "choices": {**a["choices"], "l3": "k3"}}
    with pytest.raises(InputError, match=r"choices\.l3 = 'k3'"):
        check_same_arch(b, a, source="w.pt")
    check_same_arch({**a, "resolution": 32}, a, source="w.pt")  # another resolution is fine


def test_read_weights_of_plain_state_dict(tmp_path, toy_space):
    model = build_model(toy_space.resolve(toy_space.preset("big")))
    path = save_checkpoint(tmp_path / "sd.pt", model.state_dict())
    state, arch, extra = read_weights(path)
    assert arch is None and extra == {} and set(state) == set(model.state_dict())
