"""The numpy oracle as an executor: what it holds in memory and what its float32 mode is for (the numbers it
computes are every backend test's subject)."""

from __future__ import annotations

import tracemalloc

import numpy as np

import specdsl
from specdsl import reference
from specdsl.api import at_resolution
from specdsl.passes.lower import lower
from tests.calibrated import calibration_images, random_weights


def test_the_oracle_frees_each_map_after_its_last_reader() -> None:
    """L2 at 800 px would hold 44.8 GiB if every op's output stayed alive; freed after its last reader, a network's
    peak is a few maps (and the taps asked for), not the sum of all of them (b0 at 160 px: 0.19 of it, 1.11 when
    nothing is freed)."""
    ir = at_resolution(specdsl.load("b0"), 160)
    state = random_weights(ir, 0, calibration=1)
    x = calibration_images(ir, 0, 1)
    every_output = specdsl.analyze(ir, dtype="float64").activation_bytes
    for net in (lower(ir), lower(ir, features="strides")):
        tracemalloc.start()
        out = reference.run(net, state, x)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < every_output / 3, (peak, every_output)
        assert len(out) == (len(net.taps) if net.taps else 1)
    tracemalloc.start()
    reference.calibrate_batch_norm(lower(ir), state, x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < every_output / 3, (peak, every_output)


def test_float32_mode_is_the_same_arithmetic_rounded() -> None:
    """``dtype=np.float32`` is the floor a float32 backend is measured against: float32 arrays, different from
    the float64 result by rounding only."""
    ir = at_resolution(specdsl.load("mixnet_s"), 64)
    state = random_weights(ir, 1)
    x = calibration_images(ir, 1)
    net = lower(ir, features="strides")
    exact = reference.run(net, state, x)
    rounded = reference.run(net, state, x, dtype=np.float32)
    for low, high in zip(rounded, exact, strict=True):
        assert low.dtype == np.float32 and high.dtype == np.float64
        error = np.abs(low - high).max() / np.abs(high).max()
        assert 0 < error < 1e-4
