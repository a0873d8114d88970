"""Framework-free weight helpers: the numpy reference init, BN folding, and the oracle's BN calibration."""

from __future__ import annotations

import math

import numpy as np

import specdsl
from specdsl import reference, weights
from specdsl.passes.lower import BatchNorm, Conv, lower
from tests.calibrated import images, random_weights
from tests.conftest import TINY_SPEC


def test_initial_weights_follow_the_reference_init() -> None:
    ir = specdsl.load("b0")
    state = weights.initial(ir, seed=1)
    weights.validate(state, ir)
    assert all(array.dtype == np.float32 for array in state.values())
    head = state["head.conv.weight"]  # 1x1, 1280 outputs: fan_out 1280
    assert abs(head.std() - math.sqrt(2 / 1280)) < 0.01 * math.sqrt(2 / 1280)
    assert np.all(state["stem.bn.running_var"] == 1) and np.all(state["stem.bn.running_mean"] == 0)
    assert np.abs(state["classifier.weight"]).max() <= 1 / math.sqrt(1000)
    again, other = weights.initial(ir, seed=1), weights.initial(ir, seed=2)
    assert all(np.array_equal(state[name], again[name]) for name in state)
    assert not np.array_equal(state["head.conv.weight"], other["head.conv.weight"])


def test_folding_equals_conv_then_batch_norm() -> None:
    ir = specdsl.loads(TINY_SPEC)
    net = lower(ir)
    state = random_weights(ir, seed=3)
    folded = weights.fold_batch_norm(net, state)
    assert not any(name.endswith((".running_mean", ".running_var")) for name in folded)
    convs = {op.name: op for op in net.ops if isinstance(op, Conv)}
    rng = np.random.default_rng(4)
    for op in net.ops:
        if not isinstance(op, BatchNorm):
            continue
        conv = convs[op.folds_into]
        x = rng.standard_normal((2, conv.in_channels, 9, 9))
        bn = {suffix: state[f"{op.name}.{suffix}"].astype(np.float64) for suffix in ("weight", "bias", "running_mean")}
        scale = bn["weight"] / np.sqrt(state[f"{op.name}.running_var"].astype(np.float64) + op.eps)
        plain = reference.conv2d(x, state[f"{conv.name}.weight"], None, conv.stride, conv.groups, conv.pads)
        expected = (plain - bn["running_mean"][:, None, None]) * scale[:, None, None] + bn["bias"][:, None, None]
        weight, bias = folded[f"{conv.name}.weight"], folded[f"{conv.name}.bias"]
        actual = reference.conv2d(x, weight, bias, conv.stride, conv.groups, conv.pads)
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_calibrated_statistics_normalise_each_batch_norm_input() -> None:
    ir = specdsl.loads(TINY_SPEC)
    net = lower(ir)
    x = images(4, ir.resolution, seed=5)
    state = reference.calibrate_batch_norm(net, weights.initial(ir, seed=6), x)
    for op in net.ops:
        if isinstance(op, BatchNorm):
            y = reference.run(net, state, x, until=op.name)  # weight 1, bias 0: normalised exactly
            np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
            variance = state[f"{op.name}.running_var"].astype(np.float64)
            np.testing.assert_allclose(y.var(axis=(0, 2, 3)), variance / (variance + op.eps), rtol=1e-4)
