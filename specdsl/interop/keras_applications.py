"""Canonical weights from keras.applications EfficientNet (V1) and EfficientNetV2, built with ``include_top=True``.

Keras names blocks ``block{stage + 1}{a, b, ...}_*``. Variables and kernels convert to the canonical
names and layout as `keras_layout` states (HWIO -> OIHW and so on). Preprocessing layers are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from specdsl.interop._common import gather
from specdsl.interop.keras_layout import VARIABLES, from_keras, layout_of
from specdsl.ir import Block, ModelIR
from specdsl.passes.lower import Op
from specdsl.vocabulary import BlockKind

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
    return import_variables(source, ir, label=f"keras model '{model.name}'")


def layer_of(ir: ModelIR, source_names: Iterable[str]) -> Callable[[Op, str, Block | None], str]:
    """The keras.applications layer that holds each weighted op (``block1a_dwconv``, ``top_conv``); whether
    depthwise layers are V2's ``dwconv2`` or V1's ``dwconv`` is read from the source's layer names."""
    dw = "dwconv2" if any(key.split("/")[0].endswith("_dwconv2") for key in source_names) else "dwconv"

    def locate(_op: Op, role: str, block: Block | None) -> str:
        if block is None:
            return _TOP_LAYERS[role]
        part = _SPATIAL_LAYERS[block.kind].get(role) or _BLOCK_LAYERS[role]
        return f"block{block.stage + 1}{chr(97 + block.index)}_{part.format(dw=dw)}"

    return locate


def import_variables(
    source: Mapping[str, Any], ir: ModelIR, *, label: str, skip_head: bool = False
) -> dict[str, np.ndarray]:
    """Canonical weights from ``{"<layer>/<variable>": array}`` (``block1a_dwconv/depthwise_kernel``), as a
    keras.applications model or its legacy ``.h5`` weights file names them."""

    def convert(op: Op, suffix: str, variable: Any) -> np.ndarray:
        return from_keras(np.asarray(variable, dtype=np.float32), layout_of(op, suffix))

    return gather(ir, source, layer_of(ir, source), VARIABLES, convert, label, "/", skip_head=skip_head)
