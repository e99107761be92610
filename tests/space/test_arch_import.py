"""Importing published architectures: the released ProxylessNAS nets (official configs in
../shared/reference/architectures/) with their published parameter counts, and Once-for-All subnet
encodings that predict from the imported Note10 tables with every key found."""

from __future__ import annotations

import json

import pytest

from hwnas.errors import InputError
from hwnas.latency.importers import import_ofa_yaml
from hwnas.space.arch_import import ofa_to_arch, proxyless_to_arch
from hwnas.space.build import build_model, count_params
from hwnas.space.loader import load_space
from tests.conftest import REFERENCE, cli_json, run_cli

ARCHS = REFERENCE / "architectures"
CONFIGS = ARCHS / "official_configs"
NOTE10 = REFERENCE / "latency_tables"

# Tests that read ../shared/reference take the ``reference`` fixture (tests/conftest.py): they skip
# when it is absent, and fail under CI=true. The encoding tests below need no shared file.
needs_reference = pytest.mark.usefixtures("reference")

# An OFA subnet encoding in the published {"ks", "e", "d", "r"} form: stage depths 2, 3, 4, 2, 3;
# the values in unused slots (e.g. ks[2], ks[3]) do not matter.
ENCODING = {"wid": None,
            "ks": [3, 5, 7, 7, 5, 5, 3, 3, 7, 3, 5, 5, 3, 3, 7, 5, 5, 7, 3, 3],
            "e": [3, 4, 6, 6, 4, 4, 6, 6, 6, 3, 4, 4, 4, 6, 3, 3, 6, 6, 4, 3],
            "d": [2, 3, 4, 2, 3], "r": [192]}


@needs_reference
@pytest.mark.parametrize("name, space, published", [
    ("mobile", "proxyless-mobile", "4.08M"), ("gpu", "proxyless-gpu", "7.12M"), ("cpu", "proxyless-cpu", "4.36M"),
])
def test_proxyless_configs_import_with_published_params(name, space, published):
    raw = json.loads((CONFIGS / f"proxyless_{name}.config.json").read_text())
    sp, arch = proxyless_to_arch(raw)
    assert sp.name == space
    params = count_params(build_model(sp.resolve(arch)))
    assert f"{params / 1e6:.2f}M" == published  # the repository's eval log, rounded as published
    reported = json.loads((ARCHS / f"proxyless_{name}.json").read_text())["reported_in_repo_eval_log"]["params"]
    assert reported == published
    assert arch["choices"] == sp.preset(f"proxyless_{name}")["choices"]  # the space's preset of that net
    # layer by layer against the config: skipped (ZeroLayer) blocks and kernels
    body = [b for b in sp.resolve(arch) if not b.slot.startswith(("stem", "head"))]
    for b, cfg in zip(body, raw["blocks"]):
        conv = cfg["mobile_inverted_conv"]
        if conv["name"] == "ZeroLayer":
            assert b.op == "skip"
        else:
            assert (b.cin, b.cout, b.kernel, b.stride) == (conv["in_channels"], conv["out_channels"],
                                                           conv["kernel_size"], conv["stride"])


@needs_reference
def test_proxyless_config_of_no_space_is_refused():
    raw = json.loads((CONFIGS / "proxyless_mobile.config.json").read_text())
    raw["blocks"][1]["mobile_inverted_conv"]["kernel_size"] = 9
    with pytest.raises(InputError, match="no search space reproduces this net"):
        proxyless_to_arch(raw)
    with pytest.raises(InputError, match="proxyless-gpu"):
        proxyless_to_arch(json.loads((CONFIGS / "proxyless_mobile.config.json").read_text()), space="proxyless-gpu")


def test_ofa_encoding_maps_slots_and_ignores_unused_ones():
    sp, arch = ofa_to_arch(ENCODING)
    c = arch["choices"]
    assert sp.name == "ofa-mbv3" and arch["resolution"] == 192
    assert [c[f"s{i}_depth"] for i in range(1, 6)] == [2, 3, 4, 2, 3]
    assert (c["s1_l1_kernel"], c["s1_l1_expand"], c["s1_l2_kernel"], c["s1_l2_expand"]) == (3, 3, 5, 4)
    assert (c["s3_l4_kernel"], c["s3_l4_expand"]) == (5, 4)  # index 11: the last slot of the 4-deep stage
    other = dict(ENCODING, ks=list(ENCODING["ks"]))
    other["ks"][2], other["ks"][3] = 3, 3  # unused slots of stage 1 (depth 2)
    assert ofa_to_arch(other)[1] == arch
    blocks = sp.resolve(arch)
    assert len(blocks) == 1 + 1 + sum(ENCODING["d"]) + 4  # stem, first block, 14 layers, head


# Hand sums of the published Note10 YAML means for ENCODING, with the 20 keys written out by a one-off
# script from OFA's own key convention (once-for-all ofa/nas/efficiency_predictor/latency_lookup_table.py,
# MBv3LatencyTable.predict_network_latency_given_config; not from hwnas): stem Conv R -> R/2 x 24; first
# block 24 -> 24 (mid 24, k3, s1, idskip 1); per stage (widths 32, 48, 96, 136, 192; strides 2, 2, 2, 1, 2;
# se 0, 1, 0, 1, 1; hs 0, 0, 1, 1, 1) the first d[i] slots with mid = cin * e, stride on the first layer,
# idskip = 1 on the others; Conv_1 192 -> 1152, AvgPool2D, Conv_2 1152 -> 1536, Logits 1536 -> 1000.
NOTE10_HAND_SUM_MS = {160: 18.397988710635417, 192: 25.0471624830394, 224: 33.60416279852492}


@needs_reference
@pytest.mark.parametrize("res", [160, 192, 224])
def test_ofa_encoding_predicts_from_note10_with_every_key_found(res):
    table = import_ofa_yaml(NOTE10 / f"ofa_note10_{res}_lookup_table.yaml")
    sp, arch = ofa_to_arch(ENCODING, resolution=res)
    blocks = sp.resolve(arch)
    table.check_arch(arch)
    assert table.missing(blocks) == []
    total, per = table.lookup_sum(blocks)
    assert sum(v is not None for v in per) == 20  # stem, first block, 14 layers, 4 head entries
    assert total == pytest.approx(NOTE10_HAND_SUM_MS[res], abs=1e-6)


@needs_reference
def test_ofa_w10_space_and_cli(tmp_path):
    enc = tmp_path / "enc.json"
    enc.write_text(json.dumps(ENCODING))
    data = cli_json("arch", "import", "--format", "ofa", str(enc), "--space", "ofa-mbv3-w10", "--out",
                    str(tmp_path / "a10.json"))
    assert data["space"] == "ofa-mbv3-w10" and data["arch"]["resolution"] == 192
    sp = load_space("ofa-mbv3-w10")
    assert sp.resolve(json.loads((tmp_path / "a10.json").read_text()))[0].cout == 16  # the w1.0 stem
    sp12, arch12 = ofa_to_arch(ENCODING)  # default: w1.2
    assert sp12.name == "ofa-mbv3" and sp12.resolve(arch12)[0].cout == 24
    data = cli_json("arch", "import", "--format", "proxyless", str(CONFIGS / "proxyless_gpu.config.json"),
                    "--out", str(tmp_path / "gpu.json"))
    assert data["space"] == "proxyless-gpu" and round(data["params"] / 1e6, 2) == 7.12


@pytest.mark.parametrize("change, message", [
    ({"ks": [3] * 19}, "field 'ks' must be a list of 20 numbers"),
    ({"d": [2, 3, 4, 2, 5]}, r"d\[4\] = 5 is not a depth"),
    ({"e": [9] + ENCODING["e"][1:]}, r"e\[0\] = 9 is not an option of s1_l1_expand"),
    ({"wid": 2}, "only the fixed-width OFA networks"),
    ({"kernel": 3}, "unknown field 'kernel'"),
])
def test_bad_ofa_encodings_are_input_errors(change, message):
    with pytest.raises(InputError, match=message):
        ofa_to_arch({**ENCODING, **change})


def test_bad_encoding_cli_exits_2_and_writes_nothing(tmp_path):
    enc = tmp_path / "enc.json"
    enc.write_text(json.dumps({**ENCODING, "d": [2, 3, 4, 2, 5]}))
    r = run_cli("arch", "import", "--format", "ofa", str(enc), "--out", str(tmp_path / "a.json"))
    assert r.returncode == 2 and "d[4] = 5 is not a depth of space ofa-mbv3" in r.stderr
    assert not (tmp_path / "a.json").exists() and r.stdout == ""
