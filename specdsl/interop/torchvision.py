"""Canonical weights from torchvision's EfficientNet (``efficientnet_b0..b7``, ``efficientnet_v2_s/m/l``) state dicts.

The name rule is read from torchvision's source, ``torchvision/models/efficientnet.py`` (pytorch/vision): the
model is ``features`` (a Sequential: ``features.0`` the stem, ``features.<stage + 1>.<index>`` the blocks,
the last one the head conv) and ``classifier.1`` (a Linear after a Dropout). Every conv is a
``Conv2dNormActivation``: ``.0`` the conv, ``.1`` its BatchNorm. A block's layers are ``block.<i>``, numbered in
the order that exists: an ``MBConv`` has the expand conv (only when it expands), the depthwise conv, the
``SqueezeExcitation`` (``fc1``, ``fc2``, convs with bias) and the project conv; a ``FusedMBConv`` has the fused
k x k conv and the project conv when it expands, only the k x k conv when it does not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specdsl.interop._common import TORCH_SUFFIXES, gather
from specdsl.ir import Block, ModelIR
from specdsl.passes.lower import Op
from specdsl.vocabulary import BlockKind
from specdsl.weights import state_of, to_numpy

#: The units of a block in torchvision's order; those a block lacks are skipped when numbering ``block.<i>``.
_ORDER = ("expand", "spatial", "se", "project")


def _position(role: str, block: Block) -> str:
    """``block.<i>.0`` for a conv, ``block.<i>.1`` for its BN, ``block.<i>.fc1`` for the SE reduce conv."""
    unit, _, part = role.partition(".")
    present = ["spatial"]
    if block.kind is BlockKind.MBCONV:
        present = [u for u in _ORDER if u != "expand" or block.expand_channels is not None]
        if block.se_channels is None:
            present.remove("se")
    elif block.kind is BlockKind.FUSED:
        present = ["spatial", "project"]
    index = present.index(unit)
    if unit == "se":
        return f"block.{index}.{'fc1' if part == 'reduce' else 'fc2'}"
    return f"block.{index}.{1 if part == 'bn' else 0}"


def import_weights(
    state: Any, ir: ModelIR, *, label: str = "torchvision state dict", skip_head: bool = False
) -> dict[str, np.ndarray]:
    """Canonical weights from a torchvision EfficientNet's ``state_dict()`` (or the model)."""
    last = len({block.stage for block in ir.blocks}) + 1
    top = {"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.conv": f"features.{last}.0",
           "head.bn": f"features.{last}.1", "classifier": "classifier.1"}  # fmt: skip

    def locate(_op: Op, role: str, block: Block | None) -> str:
        if block is None:
            return top[role]
        return f"features.{block.stage + 1}.{block.index}.{_position(role, block)}"

    def convert(_op: Op, _suffix: str, tensor: Any) -> np.ndarray:
        return to_numpy(tensor).copy()

    return gather(ir, state_of(state), locate, TORCH_SUFFIXES, convert, label, ".", skip_head=skip_head)
