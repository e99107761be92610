"""hwnas train: it learns, checkpoints every epoch, resumes to identical weights, refuses bad input."""

from __future__ import annotations

import json

import pytest
import torch

from hwnas.errors import InputError
from hwnas.train.checkpoint import load_checkpoint
from hwnas.train.retrain import CHECKPOINT_FORMAT, TrainConfig, train_arch
from tests.conftest import TOY_SPACE, cli_json, run_cli

CFG = TrainConfig(epochs=2, lr=0.1, batch_size=32, seed=0)


def _arch(toy_space):
    return toy_space.preset("big", resolution=16, num_classes=10)


class _Killed(Exception):
    pass


def test_learns_and_resume_is_bit_identical(tmp_path, toy_space):
    arch = _arch(toy_space)
    full = train_arch(toy_space, arch, config=CFG, out_dir=tmp_path / "full", progress=False)
    assert full.accuracy > 0.5  # 10 classes: chance is 0.1; measured 0.78 after 2 epochs
    assert full.count == 359  # digits: 1,797 images, 20 % held out
    assert [h["epoch"] for h in full.history] == [1, 2]
    lines = (tmp_path / "full" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["val_accuracy"] for line in lines] == [h["val_accuracy"] for h in full.history]
    assert full.history[-1]["val_accuracy"] == pytest.approx(full.accuracy)

    def kill_after_first(epoch: int) -> None:
        if epoch == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train_arch(toy_space, arch, config=CFG, out_dir=tmp_path / "cut", progress=False, on_epoch_end=kill_after_first)
    cut = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert cut["format"] == CHECKPOINT_FORMAT and cut["epoch"] == 1 and not (tmp_path / "cut" / "summary.json").exists()
    resumed = train_arch(toy_space, arch, config=CFG, out_dir=tmp_path / "cut", resume=True, progress=False)
    a = load_checkpoint(full.checkpoint)["model"]
    b = load_checkpoint(resumed.checkpoint)["model"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.accuracy == full.accuracy
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]

    # resuming a finished run trains nothing and reports the same accuracy
    again = train_arch(toy_space, arch, config=CFG, out_dir=tmp_path / "cut", resume=True, progress=False)
    assert again.accuracy == full.accuracy


def test_existing_run_and_changed_settings_are_refused(tmp_path, toy_space):
    arch = _arch(toy_space)
    one = TrainConfig(epochs=1, batch_size=64, data_limit=200)
    train_arch(toy_space, arch, config=one, out_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="already holds a training run"):
        train_arch(toy_space, arch, config=one, out_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match=r"^--lr is 0\.2, but the run in .* was started with 0\.05"):
        train_arch(toy_space, arch, config=TrainConfig(epochs=1, batch_size=64, data_limit=200, lr=0.2),
                   out_dir=tmp_path, resume=True, progress=False)
    other = toy_space.preset("small", resolution=16, num_classes=10)
    with pytest.raises(InputError, match="another architecture"):
        train_arch(toy_space, other, config=one, out_dir=tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("field,value,flag", [("epochs", 0, "--epochs"), ("lr", -1.0, "--lr"),
                                              ("label_smoothing", 1.0, "--label-smoothing"),
                                              ("batch_size", 0, "--batch-size"), ("data_limit", 0, "--data-limit")])
def test_bad_settings(field, value, flag):
    with pytest.raises(InputError, match=f"^{flag} "):
        TrainConfig(**{field: value}).validate()


def test_cli_train_json_and_class_mismatch(tmp_path, toy_space):
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(json.dumps(_arch(toy_space)))
    out = tmp_path / "run"
    data = cli_json("train", "--arch", str(arch_file), "--space", str(TOY_SPACE), "--data", "digits", "--epochs", "1",
                    "--data-limit", "300", "--label-smoothing", "0.1", "--out", str(out))
    assert 0.0 <= data["accuracy"] <= 1.0 and data["val_count"] == 300
    ckpt = load_checkpoint(data["checkpoint"])
    assert ckpt["config"]["label_smoothing"] == 0.1 and ckpt["preprocessing"]["stored_channels"] == 1
    assert {"config.json", "checkpoint.pt", "history.jsonl", "summary.json"} <= {p.name for p in out.iterdir()}

    # the default toy arch has 4 classes; digits has 10: exit 2, one sentence, nothing written
    four = tmp_path / "four.json"
    four.write_text(json.dumps(toy_space.preset("big", resolution=16)))
    r = run_cli("train", "--arch", str(four), "--space", str(TOY_SPACE), "--epochs", "1", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "has 10 classes, but the architecture has num_classes 4" in r.stderr
    assert r.stdout == "" and not (tmp_path / "x").exists()
