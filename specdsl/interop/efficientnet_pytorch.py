"""Canonical weights from efficientnet-pytorch (lukemelas/EfficientNet-PyTorch): V1, MBConv blocks only.

``_blocks.i`` is the block with global index ``i``; tensors are already in PyTorch layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specdsl.interop._common import TORCH_SUFFIXES, gather
from specdsl.ir import Block, ModelIR
from specdsl.passes.lower import Op
from specdsl.vocabulary import BlockKind
from specdsl.weights import WeightsError, state_of, to_numpy

_BLOCK_LAYERS = {
    "expand.conv": "_expand_conv",
    "expand.bn": "_bn0",
    "spatial.conv": "_depthwise_conv",
    "spatial.bn": "_bn1",
    "se.reduce": "_se_reduce",
    "se.expand": "_se_expand",
    "project.conv": "_project_conv",
    "project.bn": "_bn2",
}
_TOP_LAYERS = {
    "stem.conv": "_conv_stem",
    "stem.bn": "_bn0",
    "head.conv": "_conv_head",
    "head.bn": "_bn1",
    "classifier": "_fc",
}


def import_weights(
    model: Any, ir: ModelIR, *, label: str = "efficientnet-pytorch model", skip_head: bool = False
) -> dict[str, np.ndarray]:
    """Canonical weights from an ``efficientnet_pytorch.EfficientNet`` (a torch module)."""

    def locate(op: Op, role: str, block: Block | None) -> str:
        if block is None:
            return _TOP_LAYERS[role]
        if block.kind != BlockKind.MBCONV:
            raise WeightsError(f"efficientnet-pytorch has MBConv blocks only; '{op.name}' is in a {block.kind} block")
        return f"_blocks.{block.global_index}.{_BLOCK_LAYERS[role]}"

    def convert(_op: Op, _suffix: str, tensor: Any) -> np.ndarray:
        return to_numpy(tensor).copy()

    return gather(ir, state_of(model), locate, TORCH_SUFFIXES, convert, label, ".", skip_head=skip_head)
