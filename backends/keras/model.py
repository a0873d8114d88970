"""IR -> ``keras.Model``: the lowered network translated op by op with the functional API.

Only ``keras.layers`` (and stock activations) are used, so the same model runs on every Keras
backend and a ``.keras`` file reloads with ``safe_mode=True`` without specdsl. One function per op
kind in `TRANSLATIONS`; each reads the op's fields and decides nothing (docs/architecture.md).
Inputs are NHWC at the size the network was lowered for, or at the size ``resolution=`` asks: the same lowering,
its ``dynamic_padding`` convs padded as TF SAME for that size (`specdsl.backends.input_size`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from specdsl import limits
from specdsl import weights as canonical
from specdsl.errors import SpecError, shorten
from specdsl.ir import ModelIR
from specdsl.passes.lower import (
    INPUT,
    Activation,
    BatchNorm,
    Dropout,
    DropPath,
    Linear,
    LoweredNetwork,
    Op,
    Shape,
    Slice,
    lower,
    lower_for_build,
)

from ..naming import file_stem
from .convs import cond_conv, conv
from .weights import assign, layer_name

Weights = str | Path | Mapping[str, Any] | None
#: (op, its input tensors, a seed for its initializer or noise) -> its output tensor.
Translation = Callable[[Any, list[Any], int], Any]

#: The lowering's activation functions by Keras's names; Keras 3's hard_sigmoid is relu6(x + 3) / 6, hard_silu
#: x * hard_sigmoid(x) (tests/keras check both against the oracle's definitions).
ACTIVATIONS = {
    "silu": "silu",
    "relu": "relu",
    "relu6": "relu6",
    "hard_swish": "hard_silu",
    "sigmoid": "sigmoid",
    "hard_sigmoid": "hard_sigmoid",
}


def _batch_norm(op: BatchNorm, inputs: list[Any], seed: int) -> Any:
    """Keras's momentum is the weight of the running value, PyTorch's (the lowering's) that of the batch value."""
    return keras.layers.BatchNormalization(momentum=1.0 - op.momentum, epsilon=op.eps, name=layer_name(op.name))(
        inputs[0]
    )


def _activation(op: Activation, inputs: list[Any], seed: int) -> Any:
    return keras.layers.Activation(ACTIVATIONS[op.function], name=layer_name(op.name))(inputs[0])


def _drop_path(op: DropPath, inputs: list[Any], seed: int) -> Any:
    """Per-sample stochastic depth, training only: one Bernoulli draw per sample, survivors scaled by 1/(1 - rate)."""
    return keras.layers.Dropout(op.rate, noise_shape=(None, 1, 1, 1), seed=seed, name=layer_name(op.name))(inputs[0])


def _dropout(op: Dropout, inputs: list[Any], seed: int) -> Any:
    return keras.layers.Dropout(op.rate, seed=seed, name=layer_name(op.name))(inputs[0])


def _slice(op: Slice, inputs: list[Any], seed: int) -> Any:
    """Channels start:stop, in stock layers (Keras has no slicing layer): the channels as a spatial axis, cropped."""
    x = inputs[0]
    name, (height, width, channels) = layer_name(op.name), x.shape[1:]
    cells = keras.layers.Reshape((height, width, channels, 1), name=f"{name}_cells")(x)
    kept = keras.layers.Cropping3D(((0, 0), (0, 0), (op.start, channels - op.stop)), name=f"{name}_crop")(cells)
    return keras.layers.Reshape((height, width, op.stop - op.start), name=name)(kept)


def _linear(op: Linear, inputs: list[Any], seed: int) -> Any:
    return keras.layers.Dense(op.out_features, use_bias=op.bias, kernel_initializer="zeros", name=layer_name(op.name))(
        inputs[0]
    )


TRANSLATIONS: dict[str, Translation] = {
    "conv": conv,
    "cond_conv": cond_conv,
    "slice": _slice,
    "concat": lambda op, inputs, seed: keras.layers.Concatenate(axis=-1, name=layer_name(op.name))(inputs),
    "batch_norm": _batch_norm,
    "activation": _activation,
    "global_avg_pool": lambda op, inputs, seed: keras.layers.GlobalAveragePooling2D(
        keepdims=True, name=layer_name(op.name)
    )(inputs[0]),
    "flatten": lambda op, inputs, seed: keras.layers.Flatten(name=layer_name(op.name))(inputs[0]),
    "mul": lambda op, inputs, seed: keras.layers.Multiply(name=layer_name(op.name))(inputs),
    "add": lambda op, inputs, seed: keras.layers.Add(name=layer_name(op.name))(inputs),
    "drop_path": _drop_path,
    "dropout": _dropout,
    "linear": _linear,
}


def nhwc(shape: Shape) -> Shape:
    """A lowering shape per sample, (C, H, W) or (C,), in Keras's channels-last order."""
    return (*shape[1:], shape[0]) if len(shape) == 3 else shape


def _translate(op: Op, inputs: list[Any], seed: int, resized: bool = False) -> Any:
    """The op's Keras output, checked against the lowering's shape (its channels only at another input size)."""
    translation = TRANSLATIONS.get(op.op)
    if translation is None:
        raise NotImplementedError(f"the Keras backend has no translation for op kind {op.op!r} ({op.name})")
    out = translation(op, inputs, seed)
    found, stated = tuple(out.shape[1:]), nhwc(op.out_shape)
    if found != stated and not (resized and len(found) == len(stated) and found[-1] == stated[-1]):
        raise AssertionError(f"{op.name}: Keras computes shape {out.shape[1:]}, the lowering states {op.out_shape}")
    return out


def op_seeds(seed: int, count: int) -> list[int]:
    """One seed per op, spawned from ``seed`` (numpy's SeedSequence): reproducible, and no global RNG is read."""
    return [int(value) >> 1 for value in np.random.SeedSequence(seed).generate_state(count)]  # < 2**31


def preprocessing(net: LoweredNetwork) -> keras.layers.Layer:
    """(pixel / 255 - mean) / std as one layer on 0-255 input: mean and std of ``net.normalization`` in pixels."""
    norm = net.normalization
    return keras.layers.Normalization(
        mean=[255.0 * m for m in norm.mean], variance=[(255.0 * s) ** 2 for s in norm.std], name="preprocessing"
    )


def translate(
    net: LoweredNetwork, *, seed: int = 0, include_preprocessing: bool = False, resolution: int | None = None
) -> keras.Model:
    """The functional model of ``net``, built with zero weights (`build` assigns them); ``seed`` spawns the seeds of
    the dropout and stochastic-depth noise. ``resolution``: the input's height and width, if not the lowering's."""
    channels, height, width = net.input_shape
    size = (height, width) if resolution is None else (resolution, resolution)
    image = keras.Input(shape=(*size, channels), name=INPUT)
    values: dict[str, Any] = {INPUT: preprocessing(net)(image) if include_preprocessing else image}
    resized = size != (height, width)
    for op, op_seed in zip(net.ops, op_seeds(seed, len(net.ops)), strict=True):
        values[op.name] = _translate(op, [values[name] for name in op.inputs], op_seed, resized)
    if net.taps:  # a backbone: one output per tap, named by it (the layer computing it is named after the op)
        return keras.Model(image, {tap.name: values[tap.name] for tap in net.taps}, name=file_stem(net.name))
    return keras.Model(image, values[net.output], name=file_stem(net.name))


#: ``pooling=`` of an ``include_top=False`` model, as keras.applications: the layer applied to the feature map.
POOLING = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def _without_top(ir: ModelIR, include_top: bool, pooling: str | None, features: Any, out_indices: Any) -> Any:
    """The tap selection that ``include_top`` / ``pooling`` (keras.applications' options) stand for, checked."""
    if pooling is not None and pooling not in POOLING:
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    if include_top:
        if pooling is not None:
            raise ValueError("pooling applies to a model without its top: give include_top=False too")
        return features
    if features is not None or out_indices is not None:
        raise ValueError("include_top=False is the final feature map; features/out_indices select other maps: give one")
    return [lower(ir).features]


def build(
    ir: ModelIR,
    *,
    weights: Weights = None,
    seed: int = 0,
    include_preprocessing: bool = False,
    resolution: int | None = None,
    features: Any = None,
    out_indices: Sequence[int] | None = None,
    include_top: bool = True,
    pooling: str | None = None,
) -> keras.Model:
    """Translate ``ir`` into a ``keras.Model`` taking NHWC input and returning logits.

    ``weights``: a canonical safetensors path or a name -> tensor mapping (checked, transposed to Keras's layout);
    without it, the reference init `specdsl.weights.initial(ir, seed)`, the same values every backend assigns (the
    dropout noise is seeded from ``seed`` too). ``include_preprocessing``
    (default False, unlike keras.applications: the model then takes what every specdsl backend and the oracle take)
    puts the spec's normalisation in front, for 0-255 input. ``resolution``: build for this input size instead
    (`specdsl.backends.input_size`: the same lowering, its ``dynamic_padding`` convs padded as TF SAME there).

    ``features`` / ``out_indices``: a backbone (`specdsl.passes.features`) with one output per tap, a dict keyed
    by the taps' names. ``include_top=False``: the final feature map only (the head's pooling and classifier left
    out), ``pooling`` None, "avg" or "max" on it, as keras.applications. Either reads the full network's weights and
    leaves out the head's.
    """
    selection = _without_top(ir, include_top, pooling, features, out_indices)
    resolution = _checked_resolution(resolution)
    state = canonical.read(weights, ir)
    state = canonical.initial(ir, seed) if state is None else state  # the init every backend assigns
    net = lower_for_build(ir, selection, out_indices)
    model = translate(net, seed=seed, include_preprocessing=include_preprocessing, resolution=resolution)
    assign(model, net, state)
    if not include_top:
        top = model.outputs[0] if pooling is None else POOLING[pooling](name=f"{pooling}_pool")(model.outputs[0])
        model = keras.Model(model.inputs, top, name=model.name)
    model.preprocessing = canonical.preprocessing(net)  # what the weights expect (as ONNX metadata records it)
    if resolution is not None:
        model.preprocessing["preprocessing.resolution"] = str(resolution)  # the size this model takes
    return model


def _checked_resolution(resolution: int | None) -> int | None:
    """``resolution=`` bounded as a spec's own resolution is (`specdsl.limits`); a SpecError as the API's checks."""
    low, high = limits.MIN_RESOLUTION, limits.MAX_RESOLUTION
    if resolution is None:
        return None
    if isinstance(resolution, numbers.Integral) and not isinstance(resolution, bool) and low <= resolution <= high:
        return int(resolution)
    expected = f"an integer from {low} to {high}"
    raise SpecError(f"resolution must be {expected}, got {shorten(repr(resolution))}", path="specdsl.build")
