"""Canonical weights from gen-efficientnet 1.0.2 (``geffnet``): EfficientNet, -Lite, -EdgeTPU, -CondConv, MixNet,
MnasNet, MobileNetV2/V3, FBNet, SPNASNet.

``blocks.<stage>.<index>`` is the block of that stage and index (a spec's ``[a, b]`` group is one geffnet
stage). Module names depend on the block type: an ``ir`` block (an ``mbconv`` with expansion) has ``conv_pw``,
``conv_dw``, ``conv_pwl``; a ``ds`` block (no expansion) ``conv_dw``, ``conv_pw``; an ``er`` block (``fused``)
``conv_exp``, ``conv_pwl``; a ``cn`` block (``conv``) ``conv``. A split conv's group i is ``<conv>.<i>``; a
CondConv kernel is stored flat per expert, (experts, out * in * k * k), and reshaped here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specdsl.interop._common import TORCH_SUFFIXES, gather
from specdsl.ir import Block, ModelIR
from specdsl.passes.lower import CondConv, Op
from specdsl.vocabulary import BlockKind
from specdsl.weights import state_of, to_numpy

_TOP_LAYERS = {"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head", "head.bn": "bn2"}
#: Per block kind (and whether an mbconv expands): canonical unit -> geffnet module.
_UNITS = {
    "ir": {"expand": "conv_pw", "expand.bn": "bn1", "spatial": "conv_dw", "spatial.bn": "bn2", "project": "conv_pwl",
           "project.bn": "bn3"},
    "ds": {"spatial": "conv_dw", "spatial.bn": "bn1", "project": "conv_pw", "project.bn": "bn2"},
    "er": {"spatial": "conv_exp", "spatial.bn": "bn1", "project": "conv_pwl", "project.bn": "bn2"},
    "cn": {"spatial": "conv", "spatial.bn": "bn1"},
}  # fmt: skip
_SHARED = {"se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand", "routing.fc": "routing_fn"}


def _block_type(block: Block) -> str:
    if block.kind is BlockKind.MBCONV:
        return "ir" if block.expand_channels is not None else "ds"
    return "er" if block.kind is BlockKind.FUSED else "cn"


def _module(role: str, block: Block) -> str:
    """geffnet's module for a canonical role inside a block: ``spatial.conv.1`` -> ``conv_dw.1``."""
    if role in _SHARED:
        return _SHARED[role]
    unit, _, part = role.partition(".")
    units = _UNITS[_block_type(block)]
    if part == "bn":
        return units[role]
    group = part.removeprefix("conv").lstrip(".")  # "conv" or "conv.<i>"
    return units[unit] + (f".{group}" if group else "")


def import_weights(
    model: Any, ir: ModelIR, *, label: str = "gen-efficientnet model", skip_head: bool = False
) -> dict[str, np.ndarray]:
    """Canonical weights from a ``geffnet`` model (``GenEfficientNet`` or ``MobileNetV3``, a torch module)."""

    def locate(_op: Op, role: str, block: Block | None) -> str:
        if block is None:
            return _TOP_LAYERS.get(role, role)  # "classifier" is "classifier"
        return f"blocks.{block.stage}.{block.index}.{_module(role, block)}"

    def convert(op: Op, _suffix: str, tensor: Any) -> np.ndarray:
        array = to_numpy(tensor).copy()
        if isinstance(op, CondConv):
            array = array.reshape(op.experts, *op.expert_shape)
        return array

    return gather(ir, state_of(model), locate, TORCH_SUFFIXES, convert, label, ".", skip_head=skip_head)
