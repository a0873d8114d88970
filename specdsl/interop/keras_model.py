"""A Keras model that specdsl built (or a reload of one) as canonical tensors, read without importing Keras.

Each op of the lowering is one Keras layer named ``layer_name(op.name)``: the canonical name with
``.`` written as ``-`` (Keras on PyTorch turns variable paths into ``torch.nn`` parameter names,
which may not contain ``.``; canonical names never contain ``-``, so the mapping is reversible).
Layers without an op (the ZeroPadding2D before a conv, preprocessing, the helpers of a slice or a
CondConv) have names no op maps to: ``<layer>_<role>``. Names and layouts of the variables are
`specdsl.interop.keras_layout`'s.

The naming and the reader live here, below the backends, so that `specdsl.weights.state_of` reads a Keras model
without importing the Keras backend (layers only point down); the backend names its layers with the same
functions. Layers are recognised by their Keras class name and variables read through ``.numpy()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specdsl.interop.keras_layout import VARIABLES, Layout, from_keras


def layer_name(op_name: str) -> str:
    """The Keras layer name of an op: ``stages.1.0.expand.conv`` -> ``stages-1-0-expand-conv``."""
    return op_name.replace(".", "-")


def op_name(layer: str) -> str:
    """The canonical op name of a layer that `layer_name` named: its inverse."""
    return layer.replace("-", ".")


#: The EinsumDense equation that mixes a CondConv's experts by the routing (n: sample, e: expert), per kernel
#: layout: the equation names the layout, so a reloaded model reads back without the lowering.
EQUATIONS: dict[Layout, str] = {"cond_conv": "ne,eihwo->nihwo", "cond_depthwise": "ne,eoihw->noihw"}
#: Helper layers holding constants (a CondConv's one-hot patches and tap sums), not canonical tensors.
CONSTANT_ROLES = ("_patches", "_sum")

#: Keras layer class -> (op kind, layout of its kernel): how a weight-bearing layer reads back as canonical tensors.
_READERS: dict[str, tuple[str, Layout | None]] = {
    "Conv2D": ("conv", "conv"),
    "DepthwiseConv2D": ("conv", "depthwise"),
    "BatchNormalization": ("batch_norm", None),
    "Dense": ("linear", "dense"),
}


def is_keras(value: object) -> bool:
    """Whether ``value`` is a Keras object (model or layer), recognised without importing Keras."""
    return type(value).__module__.startswith("keras.")


def _reader(layer: Any) -> tuple[str | None, Layout | None]:
    if not is_keras(layer):
        return None, None
    kind = type(layer).__name__
    if kind == "EinsumDense":
        layouts = {equation: layout for layout, equation in EQUATIONS.items()}
        return ("cond_conv", layouts[layer.equation]) if layer.equation in layouts else (None, None)
    return _READERS.get(kind, (None, None))


def state_of(model: Any) -> dict[str, np.ndarray]:
    """The canonical tensors of a Keras model that specdsl built (or a reload of one), in PyTorch layout."""
    state: dict[str, np.ndarray] = {}
    for layer in model.layers:
        if not layer.weights or layer.name.endswith(CONSTANT_ROLES):
            continue
        kind, layout = _reader(layer)
        if kind is None:
            raise TypeError(f"layer '{layer.name}' ({type(layer).__name__}) holds weights no canonical op has")
        suffixes = {keras_name: suffix for suffix, keras_name in VARIABLES[kind].items()}
        for variable in layer.weights:
            suffix = suffixes[variable.name]
            array = np.asarray(variable.numpy(), dtype=np.float32)
            state[f"{op_name(layer.name)}.{suffix}"] = from_keras(array, layout if suffix == "weight" else None)
    return state
