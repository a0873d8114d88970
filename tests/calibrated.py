"""Framework-free test weights for any backend: random canonical tensors with BN statistics calibrated on
image-like inputs by the numpy oracle, so every op's numbers matter and the logits depend on the input."""

from __future__ import annotations

import functools
import math

import numpy as np

import specdsl
from specdsl import reference, weights
from specdsl.api import at_resolution
from specdsl.ir import ModelIR
from specdsl.passes.lower import BatchNorm, Conv, Linear, lower


def _linear_resize(size: int, points: int) -> np.ndarray:
    """(size, points) matrix of bilinear interpolation weights (half-pixel centres, edges clamped)."""
    source = np.clip((np.arange(size) + 0.5) * points / size - 0.5, 0, points - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, points - 1)
    matrix = np.zeros((size, points))
    np.add.at(matrix, (np.arange(size), low), 1 - (source - low))
    np.add.at(matrix, (np.arange(size), high), source - low)
    return matrix


def images(count: int, size: int, seed: int, channels: int = 3) -> np.ndarray:
    """NCHW float32 images: smooth random structure (6x6 noise, upsampled) plus pixel noise.

    Pure i.i.d. noise makes every input look alike after global pooling, so logits would hardly
    depend on the input and a comparison of two networks would prove little.
    """
    rng = np.random.default_rng(seed)
    resize = _linear_resize(size, 6)
    smooth = np.einsum("hi,ncij,wj->nchw", resize, rng.standard_normal((count, channels, 6, 6)), resize)
    return (smooth + 0.3 * rng.standard_normal((count, channels, size, size))).astype(np.float32)


def random_weights(ir: ModelIR, seed: int, calibration: int = 4) -> dict[str, np.ndarray]:
    """Canonical float32 weights: the reference init from ``seed`` with random BN affine parameters, conv and
    linear biases and a wider classifier, then BN statistics calibrated on ``calibration`` images."""
    net = lower(ir)
    state = weights.initial(ir, seed)
    rng = np.random.default_rng(seed + 1)
    for op in net.ops:
        if isinstance(op, BatchNorm):
            state[f"{op.name}.weight"] = rng.uniform(0.5, 1.5, op.channels).astype(np.float32)
            state[f"{op.name}.bias"] = rng.normal(0.0, 0.2, op.channels).astype(np.float32)
        elif isinstance(op, Conv) and op.bias:
            state[f"{op.name}.bias"] = rng.normal(0.0, 0.1, op.out_channels).astype(np.float32)
        elif isinstance(op, Linear):
            bound = 1.0 / math.sqrt(op.in_features)
            state[f"{op.name}.weight"] = rng.uniform(-bound, bound, (op.out_features, op.in_features)).astype(
                np.float32
            )
            state[f"{op.name}.bias"] = rng.uniform(-bound, bound, op.out_features).astype(np.float32)
    return reference.calibrate_batch_norm(net, state, calibration_images(ir, seed, calibration))


def calibration_images(ir: ModelIR, seed: int, calibration: int = 4) -> np.ndarray:
    """The NCHW images `random_weights(ir, seed, calibration)` calibrates BN statistics on. Logits of these are O(1);
    an unseen image can drive a deep random network's logits to 10 or more, where float32 rounding grows alike."""
    return images(calibration, ir.resolution, seed + 2, ir.in_channels)


@functools.cache
def shipped_case(
    name: str, resolution: int, seed: int = 20
) -> tuple[ModelIR, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A shipped spec at ``resolution`` with `random_weights`, two of its calibration images (NCHW) and the oracle's
    logits for them: computed once per session, for every backend's tests."""
    ir = at_resolution(specdsl.load(name), resolution)
    state = random_weights(ir, seed)
    x = calibration_images(ir, seed)[:2]
    return ir, state, x, reference.run(lower(ir), state, x)
