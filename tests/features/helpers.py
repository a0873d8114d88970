"""Shared cases for the feature-tap tests: calibrated random weights of a whole network, image-like inputs and the
numpy oracle's tapped maps, so every backend is compared with the same numbers."""

from __future__ import annotations

import functools

import numpy as np

import specdsl
from specdsl import reference
from specdsl.api import at_resolution
from specdsl.ir import ModelIR
from specdsl.passes.lower import lower
from tests.calibrated import calibration_images, random_weights

TOLERANCE = 1e-4  # relative to the tap's largest value (issue #20)

#: Numerics for a representative set at a small resolution: plain MBConv (b0), fused MBConv (v2_b0), mixed kernels
#: and grouped 1x1 (mixnet_s), CondConv (cc_b0_4e), hard-swish, SE gates and a conv block (mobilenetv3_large_100).
REPRESENTATIVE = ("b0", "v2_b0", "mixnet_s", "cc_b0_4e", "mobilenetv3_large_100")
SMALL = 64  # the representative set's resolution: the oracle at 224 takes minutes per spec
OTHER = 72  # another input size, for backends that accept one (dynamic SAME padding recomputed)
AT_OTHER = ("b0", "v2_b0", "mixnet_s")  # checked at OTHER too (CI time: each size costs an oracle calibration)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(np.asarray(got, np.float64) - expected).max() / max(np.abs(expected).max(), 1e-12))


@functools.cache
def shipped(name: str, resolution: int = SMALL, seed: int = 30) -> tuple[ModelIR, dict[str, np.ndarray]]:
    """A shipped spec at ``resolution`` with calibrated random weights (the full network's canonical tensors)."""
    ir = at_resolution(specdsl.load(name), resolution)
    return ir, random_weights(ir, seed)


@functools.cache
def oracle_taps(name: str, features: str = "strides", size: int = SMALL) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two NCHW images at ``size`` and the oracle's taps of ``shipped(name, size)`` for them (computed once per
    session, for every backend's tests). The oracle runs the lowering at ``size`` (its SAME pads), as a backend
    built at SMALL with dynamic padding must at another size. The images are the weights' calibration images:
    activations stay O(1), so float32 rounding stays small."""
    ir, state = shipped(name, size)
    x = calibration_images(ir, 30)[:2]
    return x, reference.run(lower(ir, features=features), state, x)


def at_another_size(ir: ModelIR, state: dict[str, np.ndarray], seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two NCHW images at ``ir``'s resolution + 11 (odd: SAME pads differ from the spec's on some side) and the
    oracle's ``"strides"`` taps of ``ir`` lowered at that size: what a backend built at the spec's resolution must
    give there (torch pads at run time, ONNX ``dynamic_size``, Keras ``resolution=``). Canonical weights do not
    depend on the resolution, so ``state`` serves as it is."""
    at_size = at_resolution(ir, ir.resolution + 11)
    x = calibration_images(at_size, seed)[:2]
    return x, reference.run(lower(at_size, features="strides"), state, x)
