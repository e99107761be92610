"""Malformed space files are refused with one sentence naming the file and the field."""

from __future__ import annotations

import copy
import json

import pytest

from hwnas.errors import InputError
from hwnas.space.loader import load_space
from tests.conftest import TOY_SPACE, run_cli

BASE = json.loads(TOY_SPACE.read_text())


def _stage(s):
    return s["stages"][0]


CASES = [
    ("format", lambda s: s.update(format="v0")),
    ("stages[0] (s1).layers[0].op", lambda s: _stage(s)["layers"][0].update(op="$nope")),
    ("decisions (l3)", lambda s: _stage(s)["layers"].pop()),
    ("stages[0].bogus", lambda s: _stage(s).update(bogus=1)),
    ("decisions[3].name", lambda s: s["decisions"].append({"name": "l1", "options": ["k3"]})),
    ("ops.k3.kernel", lambda s: s["ops"]["k3"].update(kernel=4)),
    ("head[0].op", lambda s: s["head"][0].update(op="conv", out=8)),
    ("stem[0].key", lambda s: s["stem"][0].pop("key")),
    ("presets.small", lambda s: s["presets"]["small"].update(l1="k7")),
    ("layer s1.0", lambda s: s["decisions"][0]["options"].append("skip")),  # skip on a first layer
]


@pytest.mark.parametrize("field,mutate", CASES, ids=[c[0] for c in CASES])
def test_malformed_space_names_field(tmp_path, field, mutate):
    raw = copy.deepcopy(BASE)
    if field == "layer s1.0":
        _stage(raw)["stride"] = 2  # the first layer now changes the shape, so skip is invalid there
    mutate(raw)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(raw))
    with pytest.raises(InputError) as info:
        load_space(p)
    assert field in str(info.value)
    assert str(p) in str(info.value)


def test_not_json(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_space(p)


def test_cli_exit_2_for_bad_space_and_arch(tmp_path):
    r = run_cli("arch", "show", "--space", "no-such-space", "--preset", "x")
    assert r.returncode == 2 and "no-such-space" in r.stderr and r.stdout == ""
    bad = tmp_path / "arch.json"
    bad.write_text(json.dumps({"space": "mobilenetv2", "resolution": 32, "choices": {"s1_l1": "e6_k3"}}))
    r = run_cli("arch", "show", "--arch", str(bad), "--json")
    assert r.returncode == 2 and "choices.s1_l2" in r.stderr and "missing" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
