"""The IR guards its own invariants, and the analysis names layers as the weights file does."""

from __future__ import annotations

import math

import pydantic
import pytest

import specdsl
from specdsl import weights
from specdsl.passes.analysis import operations
from tests.conftest import SPECS


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "conv", "se_channels": 4},
        {"kind": "fused", "expand_channels": None},
        {"residual": True, "stride": 2},
    ],
)
def test_block_invariants(change: dict) -> None:
    block = specdsl.load(SPECS / "v2_s.spec").blocks[5]
    with pytest.raises(pydantic.ValidationError):
        type(block).model_validate({**block.model_dump(), **change})


@pytest.mark.parametrize("variant", ["b0", "v2_s"])
def test_analysis_operations_carry_canonical_weight_names(variant: str) -> None:
    ir = specdsl.load(SPECS / f"{variant}.spec")
    shapes = weights.canonical_shapes(ir)
    weighted = [op for op in operations(ir) if op.params]
    assert {f"{op.name}.weight" for op in weighted} == {name for name in shapes if name.endswith(".weight")}
    for op in weighted:
        bias = shapes.get(f"{op.name}.bias", (0,))[0]
        assert op.params == math.prod(shapes[f"{op.name}.weight"]) + bias, op.name


def test_batch_norm_momentum_is_converted_cleanly() -> None:
    assert specdsl.load(SPECS / "b0.spec").batch_norm.momentum == 0.01
    assert specdsl.load(SPECS / "v2_s.spec").batch_norm.momentum == 0.1
