"""Feature taps in the lowering (issue #20): the lowering decides every tap; a network without taps is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import specdsl
from specdsl.errors import SpecError
from specdsl.passes import features as taps
from specdsl.passes.lower import Linear, LoweredNetwork, check, lower
from tests.strategies import family_network, family_spec_text, network, spec_text

SPECS = sorted(path.stem for path in (Path(__file__).resolve().parents[2] / "specs").glob("*.spec"))


def assert_backbone(net: LoweredNetwork, full: LoweredNetwork) -> None:
    """What every backbone lowering must be: valid, head dropped, taps in forward order at strictly growing or equal
    reductions, each tap's numbers its op's, and the ops a prefix of the full network's."""
    check(net)
    assert net.taps and net.ops == full.ops[: len(net.ops)]
    assert net.ops[-1].name == net.taps[-1].name == net.output == net.features
    assert not any(isinstance(op, Linear) and op.name == "classifier" for op in net.ops)
    shapes, order = full.shapes(), [op.name for op in full.ops]
    positions = [order.index(tap.name) for tap in net.taps]
    assert positions == sorted(positions)
    for tap in net.taps:
        assert tap.shape == shapes[tap.name] and tap.channels == tap.shape[0]
        height = net.input_shape[1]
        assert -(-height // tap.reduction) == tap.shape[1] or tap.shape[1] == height // tap.reduction
    assert LoweredNetwork.from_json(json.loads(json.dumps(net.to_json()))) == net


@pytest.mark.parametrize("name", SPECS)
def test_every_shipped_spec_has_a_strides_and_an_expansion_tap_table(name: str) -> None:
    ir = specdsl.load(name)
    full = lower(ir)
    strides = lower(ir, features="strides")
    assert_backbone(strides, full)
    reductions = [tap.reduction for tap in strides.taps]
    assert reductions == sorted(set(reductions))  # one tap per reduction, the last output there
    assert strides.taps[-1].name == full.features or full.features.startswith("head")  # last block's output
    expansion = lower(ir, features="expansion")
    assert_backbone(expansion, full)
    assert [tap.reduction for tap in expansion.taps] == reductions
    assert all(e.channels >= 1 for e in expansion.taps)


def test_b0_strides_are_efficientnet_pytorchs_endpoints_and_expansion_is_timms() -> None:
    ir = specdsl.load("b0")
    strides = lower(ir, features="strides")
    assert [(t.channels, t.reduction) for t in strides.taps] == [(16, 2), (24, 4), (40, 8), (112, 16), (320, 32)]
    assert [t.shape for t in strides.taps][-1] == (320, 7, 7)
    # timm feature_location="expansion": conv_pwl's input in the last block before each stride change
    expansion = lower(ir, features="expansion")
    assert [t.channels for t in expansion.taps] == [32, 144, 240, 672, 1152]
    assert [t.name for t in expansion.taps][:2] == ["stages.0.0.se.scale", "stages.1.1.se.scale"]


def test_named_taps_stages_and_out_indices() -> None:
    ir = specdsl.load("b0")
    net = lower(ir, features=["stages.5", "stages.3", "stem.act"])
    assert [t.name for t in net.taps] == ["stem.act", "stages.3.2.add", "stages.5.3.add"]  # forward order
    assert lower(ir, features="stem.act, stages.3").taps == net.taps[:2]
    picked = lower(ir, features="strides", out_indices=[2, -1])
    assert [t.reduction for t in picked.taps] == [8, 32]
    assert picked.ops == lower(ir).ops[: len(picked.ops)]


@pytest.mark.parametrize(
    ("features", "out_indices", "message"),
    [
        ("stages.9", None, r"features: 'stages.9' is not an op or stage of efficientnet-b0"),
        (["stem.act", "stem.act"], None, "selected twice"),
        ([], None, "expected 'strides', 'expansion'"),
        (7, None, "expected 'strides', 'expansion'"),
        ("strides", [5], r"out_indices: expected distinct integers from -5 to 4 \(there are 5 taps\)"),
        ("strides", [1, -4], "selects a tap twice"),
        ("strides", "12", "out_indices: expected"),
        (None, [0], "give features too"),
    ],
)
def test_bad_selections_are_one_located_error(features: object, out_indices: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        lower(specdsl.load("b0"), features=features, out_indices=out_indices)


def test_a_network_without_taps_serialises_and_hashes_as_before() -> None:
    net = lower(specdsl.load("b0"))
    assert "taps" not in net.to_json() and net.taps == ()
    assert LoweredNetwork.from_json(net.to_json()).sha256() == net.sha256()
    backbone = lower(specdsl.load("b0"), features="strides")
    assert backbone.sha256() != net.sha256() and backbone.to_json()["taps"][0]["name"] == "stages.0.0.project.bn"
    assert taps.table(backbone)[4] == {
        "index": 4,
        "name": "stages.6.0.project.bn",
        "channels": 320,
        "reduction": 32,
        "shape": [320, 7, 7],
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=network)
def test_random_networks_have_valid_tap_tables(net: dict) -> None:
    ir = specdsl.loads(spec_text(net), "prop.spec")
    for features in ("strides", "expansion"):
        assert_backbone(lower(ir, features=features), lower(ir))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_random_family_networks_have_valid_tap_tables(net: dict) -> None:
    ir = specdsl.loads(family_spec_text(net), "family.spec")
    for features in ("strides", "expansion"):
        assert_backbone(lower(ir, features=features), lower(ir))
