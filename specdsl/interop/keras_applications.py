"""Canonical weights from keras.applications EfficientNet (V1) and EfficientNetV2, built with ``include_top=True``.

Keras names blocks ``block{stage + 1}{a, b, ...}_*``. Kernels move from HWIO to OIHW, depthwise
HWC1 to C1HW and dense (in, out) to (out, in); BN ``gamma/beta/moving_mean/moving_variance``
become ``weight/bias/running_mean/running_var``. Preprocessing layers are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specdsl.interop._common import gather
from specdsl.ir import Block, ModelIR
from specdsl.passes.lower import Conv, Linear, Op
from specdsl.vocabulary import BlockKind

_SUFFIXES = {
    "conv": {"weight": "kernel", "bias": "bias"},
    "batch_norm": {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"},
    "linear": {"weight": "kernel", "bias": "bias"},
}
_TOP_LAYERS = {
    "stem.conv": "stem_conv",
    "stem.bn": "stem_bn",
    "head.conv": "top_conv",
    "head.bn": "top_bn",
    "classifier": "predictions",
}
_BLOCK_LAYERS = {
    "expand.conv": "expand_conv",
    "expand.bn": "expand_bn",
    "se.reduce": "se_reduce",
    "se.expand": "se_expand",
    "project.conv": "project_conv",
    "project.bn": "project_bn",
}
#: Keras names a block's k x k conv by what it does in that kind of block; "{dw}" is dwconv2 (V2) or dwconv (V1).
_SPATIAL_LAYERS = {
    BlockKind.MBCONV: {"spatial.conv": "{dw}", "spatial.bn": "bn"},
    BlockKind.FUSED: {"spatial.conv": "expand_conv", "spatial.bn": "expand_bn"},
    BlockKind.CONV: {"spatial.conv": "project_conv", "spatial.bn": "project_bn"},
}
_PREPROCESSING = ("Rescaling", "Normalization")


def import_weights(model: Any, ir: ModelIR) -> dict[str, np.ndarray]:
    """Canonical weights from a ``keras.applications`` EfficientNet or EfficientNetV2 model."""
    source: dict[str, Any] = {}
    for layer in model.layers:
        if type(layer).__name__ in _PREPROCESSING:
            continue
        for variable in layer.weights:
            short = getattr(variable, "path", variable.name).rsplit("/", 1)[-1].split(":")[0]
            source[f"{layer.name}/{short}"] = variable
    dw = "dwconv2" if any(key.split("/")[0].endswith("_dwconv2") for key in source) else "dwconv"

    def locate(_op: Op, role: str, block: Block | None) -> str:
        if block is None:
            return _TOP_LAYERS[role]
        part = _SPATIAL_LAYERS[block.kind].get(role) or _BLOCK_LAYERS[role]
        return f"block{block.stage + 1}{chr(97 + block.index)}_{part.format(dw=dw)}"

    def convert(op: Op, suffix: str, variable: Any) -> np.ndarray:
        array = np.asarray(variable, dtype=np.float32)
        if suffix == "weight" and isinstance(op, Conv):
            depthwise = op.groups > 1 and op.groups == op.in_channels == op.out_channels
            array = array.transpose((2, 3, 0, 1) if depthwise else (3, 2, 0, 1))
        elif suffix == "weight" and isinstance(op, Linear):
            array = array.T
        return np.ascontiguousarray(array)

    return gather(ir, source, locate, _SUFFIXES, convert, f"keras model '{model.name}'", "/")
