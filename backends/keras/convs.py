"""The windowed op kinds in stock Keras layers: ``conv``, and ``cond_conv`` as im2col (specdsl.backends.im2col).

Every number comes from the op: pads, stride, groups, kernel, experts. A ``cond_conv`` is a few stock layers, so a
``.keras`` file holding one still reloads in safe mode without specdsl: the expert kernels in an EinsumDense named
after the op (the only trainable weight), the one-hot patches and the ones that sum taps in non-trainable layers
named ``<layer>_patches`` and ``<layer>_sum``, the rest reshapes and products without weights.
"""

from __future__ import annotations

from typing import Any

import keras

from specdsl.interop.keras_layout import to_keras
from specdsl.passes.lower import CondConv, Conv

from ..im2col import contraction, needs_patches, patch_kernel, sum_kernel, taps
from ..input_size import pads_at
from .weights import EQUATIONS, layer_name


def conv_input(op: Conv | CondConv, x: Any) -> tuple[Any, str]:
    """The lowering's pads exactly (at another input size, `pads_at`'s: TF SAME where the op has
    ``dynamic_padding``), on every Keras backend and under either padding rule: ``(x, "valid")`` after an explicit
    ZeroPadding2D, or, where the lowering says the pads are stride-1 "same" (`Conv.same_size`), ``(x, "same")`` for
    the conv to pad itself (bit-identical, and no padded copy of the activation)."""
    if op.same_size:
        return x, "same"
    pads = pads_at(op, *x.shape[1:3])
    if any(pads):
        top, bottom, left, right = pads
        x = keras.layers.ZeroPadding2D(((top, bottom), (left, right)), name=f"{layer_name(op.name)}_pad")(x)
    return x, "valid"


def conv(op: Conv, inputs: list[Any], seed: int) -> Any:
    """Built with zeros: the model's values are assigned afterwards (`specdsl.weights.initial` or given weights)."""
    x, padding = conv_input(op, inputs[0])
    common = {"kernel_size": op.kernel, "strides": op.stride, "padding": padding, "use_bias": op.bias}
    if op.depthwise:
        layer = keras.layers.DepthwiseConv2D(depthwise_initializer="zeros", name=layer_name(op.name), **common)
    else:
        layer = keras.layers.Conv2D(
            op.out_channels, groups=op.groups, kernel_initializer="zeros", name=layer_name(op.name), **common
        )
    return layer(x)


def _constant(layer: keras.layers.Layer, x: Any, kernel: Any) -> Any:
    """Apply a non-trainable layer built with zeros, then set its one weight to ``kernel`` (no RNG is drawn)."""
    out = layer(x)
    layer.set_weights([kernel])
    return out


def _patches(op: CondConv, x: Any) -> Any:
    """Step 1 of im2col: (N, H', W', I*k*k), channel c*k*k + i*k + j."""
    if not needs_patches(op):
        return x
    x, padding = conv_input(op, x)
    k, channels = op.kernel, op.in_channels
    layer = keras.layers.DepthwiseConv2D(
        k,
        strides=op.stride,
        padding=padding,
        depth_multiplier=k * k,
        use_bias=False,
        depthwise_initializer="zeros",
        trainable=False,
        name=f"{layer_name(op.name)}_patches",
    )
    one_hot = to_keras(patch_kernel(channels, k), "depthwise").reshape(k, k, channels, k * k)
    return _constant(layer, x, one_hot)


def cond_conv(op: CondConv, inputs: list[Any], seed: int) -> Any:
    """Per sample n: the conv with kernel sum_e routing[n, e] * weight[e], as im2col (module docstring)."""
    x, routing = inputs
    name, k, out = layer_name(op.name), op.kernel, op.out_channels
    patches = _patches(op, x)
    height, width = patches.shape[1:3]  # the lowering's out_shape, or another input size's
    if contraction(op) == "matmul":
        shape = (op.in_channels, k, k, out)  # per sample, the "cond_conv" layout: rows in patch-channel order
        kernel = keras.layers.EinsumDense(EQUATIONS["cond_conv"], shape, kernel_initializer="zeros", name=name)
        kernel = keras.layers.Reshape((taps(op), out), name=f"{name}_kernel")(kernel(routing))
        rows = keras.layers.Reshape((height * width, taps(op)), name=f"{name}_rows")(patches)
        product = keras.layers.Dot(axes=(2, 1), name=f"{name}_matmul")([rows, kernel])
        return keras.layers.Reshape((height, width, out), name=f"{name}_out")(product)
    # Depthwise: each sample's kernel in the canonical order, channel c's taps at c*k*k + i*k + j, as the patches.
    kernel = keras.layers.EinsumDense(
        EQUATIONS["cond_depthwise"], op.expert_shape, kernel_initializer="zeros", name=name
    )
    kernel = keras.layers.Reshape((1, 1, out * taps(op)), name=f"{name}_kernel")(kernel(routing))
    products = keras.layers.Multiply(name=f"{name}_taps")([patches, kernel])
    products = keras.layers.Reshape((height, width, out, taps(op)), name=f"{name}_cells")(products)
    # The tap sum as a Dense over the last axis: a grouped Conv2D would be XLA-compiled on Keras's TF backend.
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", trainable=False, name=f"{name}_sum")
    summed = _constant(layer, products, to_keras(sum_kernel(1, taps(op))[:, :, 0, 0], "dense"))
    return keras.layers.Reshape((height, width, out), name=f"{name}_out")(summed)
