"""``cond_conv`` in ONNX with a dynamic batch: im2col (specdsl.backends.im2col), TensorRT-listed ops only.

ONNX's Conv takes ``group`` as an attribute, fixed when the file is written, so a conv with ``groups * N``
groups over the batch laid along channels would fix the batch N. Instead, for routing r (N, E) and expert
kernels W (E, O, I/g, k, k):

* patches: ``Conv`` with constant one-hot kernels, ``group = I``, the op's pads and stride (or ``auto_pad``):
  (N, I*k*k, H', W'), an exact copy of each window (skipped for a 1x1, stride-1, unpadded op);
* mixing: ``MatMul(r, W')`` with W' the experts flattened to (E, I*k*k*O) (groups 1, transposed first so the
  rows follow the patch channels) or (E, C*k*k) (depthwise): each sample's kernel, one product for the batch;
* groups 1: ``Transpose`` patches to (N, H', W', I*k*k), ``MatMul`` with the kernel reshaped to (N, 1, I*k*k, O),
  ``Transpose`` back to (N, O, H', W');
* depthwise: ``Mul`` of the patches by the kernel reshaped to (N, C*k*k, 1, 1), then ``Conv`` with constant ones,
  ``group = C``, which sums each channel's k*k taps.

Every Reshape shape and Transpose permutation is a constant; the batch stays symbolic (``0`` in a Reshape
copies it), and no shape is computed at run time.
"""

from __future__ import annotations

import onnx_ir

from specdsl.passes.lower import CondConv

from ..im2col import contraction, needs_patches, patch_kernel, sum_kernel, taps
from .emitter import Emitter, window


def _patches(e: Emitter, op: CondConv) -> onnx_ir.Value:
    x = e.input(op, 0)
    if not needs_patches(op):
        return x
    channels, k = op.in_channels, op.kernel
    one_hot = e.constant(f"im2col.{channels}x{k}", patch_kernel(channels, k))
    shape = (channels * k * k, *op.out_shape[1:])
    return e.node("Conv", [x, one_hot], f"{op.name}.patches", shape, {**window(e, op), "group": channels})


def cond_conv(e: Emitter, op: CondConv) -> onnx_ir.Value:
    """Per sample n, the conv with kernel sum_e routing[n, e] * weight[e] (module docstring)."""
    name, out, length, experts = op.name, op.out_channels, taps(op), op.experts
    _, height, width = op.out_shape
    patches = _patches(e, op)
    routing = e.input(op, 1)
    weight = e.initializer(f"{name}.weight", (experts, *op.expert_shape))
    if contraction(op) == "matmul":
        rows = e.node(
            "Transpose",
            [weight],
            f"{name}.weight_t",
            (experts, *op.expert_shape[1:], out),
            {"perm": [0, 2, 3, 4, 1]},
            batched=False,
        )
        flat = e.node(
            "Reshape", [rows, e.ints("shape", [experts, -1])], f"{name}.experts", (experts, length * out), batched=False
        )
        mixed = e.node("MatMul", [routing, flat], f"{name}.mix", (length * out,))
        kernel = e.node("Reshape", [mixed, e.ints("shape", [0, 1, length, out])], f"{name}.kernel", (1, length, out))
        pixels = e.node("Transpose", [patches], f"{name}.rows", (height, width, length), {"perm": [0, 2, 3, 1]})
        product = e.node("MatMul", [pixels, kernel], f"{name}.matmul", (height, width, out))
        return e.node("Transpose", [product], name, op.out_shape, {"perm": [0, 3, 1, 2]})
    flat = e.node(
        "Reshape", [weight, e.ints("shape", [experts, -1])], f"{name}.experts", (experts, out * length), batched=False
    )
    mixed = e.node("MatMul", [routing, flat], f"{name}.mix", (out * length,))
    kernel = e.node("Reshape", [mixed, e.ints("shape", [0, -1, 1, 1])], f"{name}.kernel", (out * length, 1, 1))
    products = e.node("Mul", [patches, kernel], f"{name}.taps", (out * length, height, width))
    ones = e.constant(f"tap_sum.{out}x{length}", sum_kernel(out, length))
    return e.node("Conv", [products, ones], name, op.out_shape, {"kernel_shape": [1, 1], "group": out})
