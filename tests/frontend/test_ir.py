"""The IR guards its own invariants."""

from __future__ import annotations

import pydantic
import pytest

import specdsl
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


def test_batch_norm_momentum_is_converted_cleanly() -> None:
    assert specdsl.load(SPECS / "b0.spec").batch_norm.momentum == 0.01
    assert specdsl.load(SPECS / "v2_s.spec").batch_norm.momentum == 0.1
