"""How Keras stores each canonical tensor: its variable name and its axis order. Framework-free (numpy).

One home for what both the keras.applications importer and the Keras backend need. Keras keeps
conv kernels HWIO, depthwise kernels (kH, kW, C, 1) and dense kernels (in, out), where the
canonical layout is PyTorch's (docs/weights.md); BN's ``gamma/beta/moving_mean/moving_variance``
are the canonical ``weight/bias/running_mean/running_var``. The Keras backend keeps a CondConv's experts in
an EinsumDense kernel: (E, I, kH, kW, O) for a plain one, the canonical (E, C, 1, kH, kW) for a depthwise one
(the orders its per-sample kernels are contracted in; specdsl.backends.im2col).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from specdsl.passes.lower import CondConv, Conv, Linear, Op

#: Op kind -> canonical suffix -> the Keras variable that holds it.
VARIABLES: dict[str, dict[str, str]] = {
    "conv": {"weight": "kernel", "bias": "bias"},
    "batch_norm": {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"},
    "linear": {"weight": "kernel", "bias": "bias"},
    "cond_conv": {"weight": "kernel"},
}

#: A kernel's layout; vectors (biases, BN parameters) are stored alike everywhere.
Layout = Literal["conv", "depthwise", "dense", "cond_conv", "cond_depthwise"]
#: Axes of the canonical array in Keras's order: OIHW -> HWIO, (C, 1, kH, kW) -> (kH, kW, C, 1), (out, in) -> (in, out),
#: CondConv (E, O, I, kH, kW) -> (E, I, kH, kW, O), depthwise CondConv as it is.
_TO_KERAS: dict[Layout, tuple[int, ...]] = {
    "conv": (2, 3, 1, 0),
    "depthwise": (2, 3, 0, 1),
    "dense": (1, 0),
    "cond_conv": (0, 2, 3, 4, 1),
    "cond_depthwise": (0, 1, 2, 3, 4),
}


def layout_of(op: Op, suffix: str) -> Layout | None:
    """The layout of canonical tensor ``<op.name>.<suffix>``; None where Keras stores it as is."""
    if suffix != "weight":
        return None
    if isinstance(op, Conv):
        return "depthwise" if op.depthwise else "conv"
    if isinstance(op, CondConv):
        return "cond_depthwise" if op.depthwise else "cond_conv"
    return "dense" if isinstance(op, Linear) else None


def to_keras(array: np.ndarray, layout: Layout | None) -> np.ndarray:
    """A canonical (PyTorch-layout) array in Keras's layout."""
    return array if layout is None else np.ascontiguousarray(np.transpose(array, _TO_KERAS[layout]))


def from_keras(array: np.ndarray, layout: Layout | None) -> np.ndarray:
    """A Keras array in the canonical layout: the inverse of `to_keras`."""
    return array if layout is None else np.ascontiguousarray(np.transpose(array, np.argsort(_TO_KERAS[layout])))
