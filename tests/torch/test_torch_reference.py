"""The PyTorch backend computes what the lowering means: the numpy float64 oracle, same weights, same input.

Weights get a seeded random init with random BN affine parameters and conv biases, then BN statistics
calibrated on image-like inputs, so every op's numbers matter and the logits depend on the input.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import specdsl
from specdsl import reference, weights
from specdsl.api import at_resolution
from specdsl.ir import ModelIR
from specdsl.passes.lower import lower
from tests.strategies import EVERY_FAMILY_FEATURE, family_network, family_spec_text, network, spec_text

torch = pytest.importorskip("torch")

from specdsl.backends.torch import build  # noqa: E402

from .helpers import calibrate_batch_norm, images, load_ir, reference_init  # noqa: E402

TOLERANCE = 1e-5  # relative to the largest logit: float32 against float64


def torch_and_oracle(ir: ModelIR, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the torch model (float32) and of the oracle (float64) for the same weights and images."""
    model = build(ir, seed=seed)
    reference_init(model, seed + 1)
    calibrate_batch_norm(model, images(4, ir.resolution, seed + 2, ir.in_channels))
    x = images(2, ir.resolution, seed + 3, ir.in_channels)
    with torch.no_grad():
        logits = model(x).double().numpy()
    expected = reference.run(lower(ir), weights.state_of(model), x.double().numpy())
    return logits, expected


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize("name,resolution", [("b0", None), ("v2_b0", 128)])
def test_torch_matches_the_oracle_on_shipped_specs(name: str, resolution: int | None) -> None:
    ir = at_resolution(load_ir(name), resolution)
    logits, expected = torch_and_oracle(ir, seed=30)
    assert np.abs(expected[0] - expected[1]).max() > 100 * TOLERANCE * np.abs(expected).max()  # input matters
    assert relative_error(logits, expected) <= TOLERANCE


def test_the_oracle_would_catch_a_wrong_padding() -> None:
    """Negative control: the same weights under symmetric padding are far outside the tolerance."""
    ir = at_resolution(load_ir("v2_b0"), 96)
    model = build(ir, seed=40)
    reference_init(model, 41)
    calibrate_batch_norm(model, images(4, 96, 42))
    x = images(2, 96, 43).double().numpy()
    symmetric = lower(ir.model_copy(update={"padding": "symmetric"}))
    state = weights.state_of(model)
    assert relative_error(reference.run(symmetric, state, x), reference.run(lower(ir), state, x)) > 100 * TOLERANCE


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=network)
def test_torch_matches_the_oracle_on_random_networks(net: dict) -> None:
    ir = specdsl.loads(spec_text(net), "prop.spec")
    logits, expected = torch_and_oracle(ir, seed=50)
    assert relative_error(logits, expected) <= TOLERANCE


def test_torch_matches_the_oracle_with_every_family_feature() -> None:
    ir = specdsl.loads(EVERY_FAMILY_FEATURE, "every.spec")
    kinds = {op.op for op in lower(ir).ops} | {op.function for op in lower(ir).ops if op.op == "activation"}
    assert {"cond_conv", "slice", "concat", "hard_sigmoid", "hard_swish", "relu", "silu"} <= kinds
    logits, expected = torch_and_oracle(ir, seed=80)
    assert np.abs(expected[0] - expected[1]).max() > 100 * TOLERANCE * np.abs(expected).max()
    assert relative_error(logits, expected) <= TOLERANCE


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_torch_matches_the_oracle_on_random_family_networks(net: dict) -> None:
    """Mixed kernels, grouped 1x1, fc, CondConv, SE options, head forms, fused stride, depth rules, groups."""
    ir = specdsl.loads(family_spec_text(net), "family.spec")
    logits, expected = torch_and_oracle(ir, seed=90)
    assert relative_error(logits, expected) <= TOLERANCE
