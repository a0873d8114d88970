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


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(np.asarray(got, np.float64) - expected).max() / max(np.abs(expected).max(), 1e-12))


@functools.cache
def shipped(name: str, resolution: int = SMALL, seed: int = 30) -> tuple[ModelIR, dict[str, np.ndarray]]:
    """A shipped spec at ``resolution`` with calibrated random weights (the full network's canonical tensors)."""
    ir = at_resolution(specdsl.load(name), resolution)
    return ir, random_weights(ir, seed)


def oracle_taps(
    ir: ModelIR, state: dict[str, np.ndarray], features: object = "strides", *, size: int | None = None, seed: int = 30
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Two NCHW images (at ``size``, default the spec's resolution) and the oracle's taps for them; at another size
    the oracle runs the lowering at that size (its SAME pads), as a backend with dynamic padding must.

    The images are the calibration images of ``shipped(name, size, seed)``'s weights: activations stay O(1), so
    float32 rounding stays small."""
    at_size = at_resolution(ir, size or ir.resolution)
    x = calibration_images(at_size, seed)[:2]
    net = lower(at_size, features=features)
    return x, reference.run(net, state, x)
