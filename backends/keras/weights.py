"""The Keras backend's edge: layer names and canonical tensors in and out of a Keras model.

Each op of the lowering is one Keras layer named ``layer_name(op.name)``: the canonical name with
``.`` written as ``-`` (Keras on PyTorch turns variable paths into ``torch.nn`` parameter names,
which may not contain ``.``; canonical names never contain ``-``, so the mapping is reversible).
Layers without an op (the ZeroPadding2D before a conv, preprocessing, the helpers of a slice or a
CondConv) have names no op maps to: ``<layer>_<role>``. Names and layouts of the variables are
`specdsl.interop.keras_layout`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from specdsl.interop.keras_layout import VARIABLES, Layout, from_keras, layout_of, to_keras
from specdsl.passes.lower import LoweredNetwork, weighted_ops


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

#: Keras layer type -> (op kind, layout of its kernel): how a weight-bearing layer reads back as canonical tensors.
_READERS: dict[type[keras.layers.Layer], tuple[str, Layout | None]] = {
    keras.layers.Conv2D: ("conv", "conv"),
    keras.layers.DepthwiseConv2D: ("conv", "depthwise"),
    keras.layers.BatchNormalization: ("batch_norm", None),
    keras.layers.Dense: ("linear", "dense"),
}


def _reader(layer: keras.layers.Layer) -> tuple[str | None, Layout | None]:
    if isinstance(layer, keras.layers.EinsumDense):
        layouts = {equation: layout for layout, equation in EQUATIONS.items()}
        return ("cond_conv", layouts[layer.equation]) if layer.equation in layouts else (None, None)
    return _READERS.get(type(layer), (None, None))


def assign(model: keras.Model, net: LoweredNetwork, state: Mapping[str, np.ndarray]) -> None:
    """Set every weight of ``model`` (built from ``net``) from canonical ``state``, transposing to Keras's layout."""
    for op in weighted_ops(net):
        variables = {variable.name: variable for variable in model.get_layer(layer_name(op.name)).weights}
        for name in op.tensors():
            suffix = name.rsplit(".", 1)[1]
            array = np.asarray(state[name], dtype=np.float32)
            variables[VARIABLES[op.op][suffix]].assign(to_keras(array, layout_of(op, suffix)))


def state_of(model: keras.Model) -> dict[str, np.ndarray]:
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
            array = np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)
            state[f"{op_name(layer.name)}.{suffix}"] = from_keras(array, layout if suffix == "weight" else None)
    return state
