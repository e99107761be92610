"""Importing the published tables in ../shared/reference/latency_tables/ (read in place): every entry
converts, keys and units are right, and archs of the matching spaces predict from them."""

from __future__ import annotations

import math

import pytest
import yaml

from hwnas.errors import InputError
from hwnas.latency.importers import import_ofa_yaml, import_proxyless_yaml, proxyless_key
from hwnas.latency.table import LatencyTable
from hwnas.space.blocks import op_key
from hwnas.space.loader import load_space
from tests.conftest import REFERENCE, cli_json, run_cli

REF = REFERENCE / "latency_tables"
PIXEL1 = REF / "proxylessnas_pixel1_mobile_trim.yaml"
NOTE10 = {r: REF / f"ofa_note10_{r}_lookup_table.yaml" for r in (160, 192, 224)}

# Tests that read ../shared/reference take the ``reference`` fixture (tests/conftest.py): they skip
# when it is absent, and fail under CI=true. The hand-keyed conversion needs no shared file.
needs_reference = pytest.mark.usefixtures("reference")


def test_proxyless_keys_by_hand():
    assert proxyless_key("expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0") == \
        "expanded_conv-input:112x112x16-output:56x56x24-expand:48-kernel:5-stride:2-idskip:0-se:0-hs:0"
    # expand ratio 1: no expansion conv, the depthwise runs on the input width
    assert proxyless_key("expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0") == \
        "expanded_conv-input:112x112x32-output:112x112x16-expand:32-kernel:3-stride:1-idskip:0-se:0-hs:0"
    assert proxyless_key("Logits-input:7x7x1280-output:1000") == "Logits-input:7x7x1280-output:1000"


@needs_reference
def test_pixel1_every_entry_converts_with_units_and_keys_right():
    raw = yaml.safe_load(PIXEL1.read_text())
    t = import_proxyless_yaml(PIXEL1)
    assert len(t) == len(raw) == 72
    for key, v in raw.items():
        e = t.entries[proxyless_key(key)]
        assert e["median_ms"] == e["mean_ms"] == v["mean"]  # ms, the published mean
        assert e["std_ms"] == pytest.approx(math.sqrt(v["var"])) and e["count"] == v["count"]
        assert e["p10_ms"] is None and e["p90_ms"] is None
    e = t.entries["expanded_conv-input:112x112x16-output:56x56x24-expand:48-kernel:5-stride:2-idskip:0-se:0-hs:0"]
    assert e["median_ms"] == pytest.approx(7.519106918238994) and e["std_ms"] == pytest.approx(0.30476246, rel=1e-6)
    d = t.device
    assert d["stat"] == "mean" and d["source"].startswith("imported:proxyless") and d["resolution"] == 224
    assert d["spaces"] == ["proxyless"] and d["num_classes"] == 1000


@needs_reference
def test_pixel1_predicts_the_proxyless_space_and_names_proxyless_mobile_gaps():
    t = import_proxyless_yaml(PIXEL1)
    sp = load_space("proxyless")
    keys = {op_key(b) for b in sp.all_blocks(resolution=224)}
    assert keys <= set(t.entries)  # every arch of the proxyless space predicts from the table alone
    # Proxyless-mobile's ops at the search space's widths (stage 1 = 24): 20 published entries
    # (63.705 ms) + the three width-24 counterparts 7.519 + 6.273 + 5.026 ms (PROVENANCE.md)
    total, per = t.lookup_sum(sp.resolve(sp.preset("proxyless_mobile_ops")))
    assert total == pytest.approx(82.5239, abs=1e-3)
    # the released net is 32 wide in stage 1: three keys are not in the table, and are named
    mob = load_space("proxyless-mobile")
    blocks = mob.resolve(mob.preset("proxyless_mobile"))
    missing = t.missing(blocks)
    assert missing == [
        "expanded_conv-input:112x112x16-output:56x56x32-expand:48-kernel:5-stride:2-idskip:0-se:0-hs:0",
        "expanded_conv-input:56x56x32-output:56x56x32-expand:96-kernel:3-stride:1-idskip:1-se:0-hs:0",
        "expanded_conv-input:56x56x32-output:28x28x40-expand:96-kernel:7-stride:2-idskip:0-se:0-hs:0",
    ]
    assert sum(t.ms(op_key(b)) for b in blocks if op_key(b) and op_key(b) not in missing) == \
        pytest.approx(63.705, abs=1e-3)
    with pytest.raises(InputError, match="has no entry for 3 block"):
        t.lookup_sum(blocks)


@needs_reference
@pytest.mark.parametrize("res", [160, 192, 224])
def test_note10_every_entry_converts_and_covers_the_ofa_space(res):
    raw = yaml.safe_load(NOTE10[res].read_text())
    t = import_ofa_yaml(NOTE10[res])
    assert len(t) == len(raw) == 96 and set(t.entries) == set(raw)
    for key, v in raw.items():
        e = t.entries[key]
        assert e["median_ms"] == v["mean"] and e["std_ms"] == v["std"] and e["count"] == v["count"]
    assert t.device["resolution"] == res and t.device["stat"] == "mean"
    sp = load_space("ofa-mbv3")
    assert {op_key(b) for b in sp.all_blocks(resolution=res)} == set(t.entries)
    total, _ = t.lookup_sum(sp.resolve(sp.preset("ofa_min", resolution=res)))
    assert total > 0
    t.check_resolution(res)
    with pytest.raises(InputError, match=f"measured at resolution {res}"):
        t.check_resolution(res + 32)


@needs_reference
def test_note10_resolution_argument_is_checked():
    assert import_ofa_yaml(NOTE10[192], resolution=192).device["resolution"] == 192
    with pytest.raises(InputError, match="stem key is at resolution 160, not the requested 224"):
        import_ofa_yaml(NOTE10[160], resolution=224)


@needs_reference
def test_import_cli_and_bad_input(tmp_path):
    out = tmp_path / "pixel1.json"
    data = cli_json("latency", "import", "--format", "proxyless", str(PIXEL1), "--out", str(out))
    assert data["entries"] == 72 and data["out"] == str(out)
    assert len(LatencyTable.load(out)) == 72
    # the wrong format is refused with the offending entry named, and nothing is written
    r = run_cli("latency", "import", "--format", "ofa", str(PIXEL1), "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "expanded_conv key needs expand, kernel, stride, idskip, se and hs" in r.stderr
    assert not (tmp_path / "x.json").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("Conv-input:8x8x3-output:4x4x8:\n  count: 3\n  mean: fast\n")
    with pytest.raises(InputError, match="field 'mean' must be a number"):
        import_ofa_yaml(bad)
    bad.write_text("Conv-input: [unclosed\n")
    with pytest.raises(InputError, match="is not valid YAML"):
        import_ofa_yaml(bad)
    # tables of two different devices (Pixel 1, Note10) do not merge
    with pytest.raises(InputError, match="cannot merge tables measured with different settings"):
        LatencyTable.load(out).merge(import_ofa_yaml(NOTE10[224]))
