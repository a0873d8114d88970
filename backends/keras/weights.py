"""The Keras backend's edge: canonical tensors into a Keras model.

Layer names (`layer_name`, `op_name`), the CondConv equations and reading a model back as canonical tensors
(`state_of`) are `specdsl.interop.keras_model`'s, below the backends, so that `specdsl.weights` reads a Keras
model without importing this backend. Names and layouts of the variables are `specdsl.interop.keras_layout`'s.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from specdsl.interop.keras_layout import VARIABLES, layout_of, to_keras
from specdsl.interop.keras_model import EQUATIONS, layer_name, op_name, state_of
from specdsl.passes.lower import LoweredNetwork, weighted_ops

__all__ = ["EQUATIONS", "assign", "layer_name", "op_name", "state_of"]


def assign(model: keras.Model, net: LoweredNetwork, state: Mapping[str, np.ndarray]) -> None:
    """Set every weight of ``model`` (built from ``net``) from canonical ``state``, transposing to Keras's layout."""
    for op in weighted_ops(net):
        variables = {variable.name: variable for variable in model.get_layer(layer_name(op.name)).weights}
        for name in op.tensors():
            suffix = name.rsplit(".", 1)[1]
            array = np.asarray(state[name], dtype=np.float32)
            variables[VARIABLES[op.op][suffix]].assign(to_keras(array, layout_of(op, suffix)))
