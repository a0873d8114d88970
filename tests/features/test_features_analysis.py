"""`specdsl.analyze(ir, features=..., out_indices=...)`: a backbone's params and MACs through the public API, with
`build`'s selection options and errors, and the same figures as `specdsl info --features` (docs/features.md). The
figures themselves are checked against torch in test_features_torch.py (`check_backbone_cost`)."""

from __future__ import annotations

import json

import pytest

import specdsl
from specdsl.api import at_resolution
from specdsl.errors import SpecError
from specdsl.passes.analysis import Backbone
from tests.conftest import run_main


def test_analyze_with_features_is_the_backbone_info_shows() -> None:
    ir = specdsl.load("b0")
    cost = specdsl.analyze(ir, features="expansion", out_indices=[1, -1], resolution=96)
    assert isinstance(cost, Backbone)
    assert cost == specdsl.analyze(at_resolution(ir, 96), features="expansion", out_indices=[1, -1])
    code, out, _ = run_main(
        "info", "b0", "--features", "expansion", "--out-indices", "1,-1", "--resolution", "96", "--json"
    )
    assert code == 0
    shown = json.loads(out)["features"]
    assert (shown["params"], shown["macs"]) == (cost.params, cost.macs)
    whole = specdsl.analyze(ir)
    assert specdsl.analyze(ir, features="strides").params < whole.params  # the head is not counted


@pytest.mark.parametrize(
    "selection",
    [{"features": "stages.9"}, {"features": 3}, {"features": "strides", "out_indices": [7]}, {"out_indices": [1]}],
)
def test_analyze_refuses_a_selection_as_build_does(selection: dict) -> None:
    ir = specdsl.load("b0")
    with pytest.raises(SpecError) as refused:
        specdsl.analyze(ir, **selection)
    with pytest.raises(SpecError) as built:
        specdsl.build(ir, backend="onnx", **selection)
    assert str(refused.value) == str(built.value)
