"""CondConv without per-sample kernels in the framework: the framework-free pieces the Keras and ONNX backends share.

A ``cond_conv`` convolves each sample with its own kernel (the routing-weighted sum of the expert
kernels). Keras layers and ONNX's Conv take one kernel for the whole batch, and ONNX's ``group`` is a
static attribute, so the batch cannot be laid along channels (``groups * N`` groups) without fixing N.
Both backends therefore compute the op as im2col with a dynamic batch:

1. **patches**: one depthwise conv with constant one-hot kernels and channel multiplier k*k, with the
   op's pads and stride: output channel ``c*k*k + i*k + j`` at pixel (y, x) is input channel c at
   (y*stride + i, x*stride + j) of the padded input, an exact copy. Skipped where it would be the identity.
2. **the per-sample kernel**: routing (N, E) times the expert kernels (E, ...), one matrix product.
3. **contraction**, per `contraction(op)`: ``"matmul"`` (groups 1) multiplies each sample's
   (pixels, I*k*k) patch rows by its (I*k*k, O) kernel; ``"taps"`` (depthwise) multiplies the patches
   elementwise by the kernel broadcast over pixels and sums each channel's k*k taps (a grouped 1x1 conv
   with constant ones).

Arithmetic: the MACs of the conv itself plus the mixing, as the lowering counts them; the patches cost
k*k times the input's memory.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from specdsl.passes.lower import CondConv

Contraction = Literal["matmul", "taps"]


def needs_patches(op: CondConv) -> bool:
    """False where the patches would equal the input (1x1 kernel, stride 1, no pads)."""
    return op.kernel > 1 or op.stride > 1 or any(op.pads)


def patch_kernel(channels: int, kernel: int) -> np.ndarray:
    """The one-hot depthwise kernel of step 1, (channels * k*k, 1, k, k) in the canonical OIHW layout."""
    taps = kernel * kernel
    weight = np.zeros((channels, taps, 1, taps), dtype=np.float32)
    weight[:, np.arange(taps), 0, np.arange(taps)] = 1.0
    return weight.reshape(channels * taps, 1, kernel, kernel)


def sum_kernel(channels: int, taps: int) -> np.ndarray:
    """The ones of the ``"taps"`` contraction's grouped 1x1 conv: (channels, taps, 1, 1), OIHW."""
    return np.ones((channels, taps, 1, 1), dtype=np.float32)


def contraction(op: CondConv) -> Contraction:
    """How step 3 runs for ``op``: ``"matmul"`` for groups 1, ``"taps"`` for depthwise (the lowering emits no other
    CondConv)."""
    if op.groups == 1:
        return "matmul"
    if op.depthwise:
        return "taps"
    raise NotImplementedError(f"{op.name}: cond_conv with {op.groups} groups is neither plain nor depthwise")


def taps(op: CondConv) -> int:
    """Length of one output channel's contraction: (I / groups) * k * k."""
    return op.in_channels // op.groups * op.kernel * op.kernel
