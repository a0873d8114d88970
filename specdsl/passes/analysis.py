"""Parameters, multiply-accumulates and activation memory: a fold over the lowered network.

Every figure comes from the ops of `specdsl.passes.lower`, so the per-layer table, the per-stage
table, the totals and the memory estimate cannot disagree with each other or with what a backend
builds. MACs count convolutions and linear layers (what torch.utils.flop_counter counts,
halved); batch norm, activations, pooling, SE multiplies, adds, slices and concats are free.
A CondConv counts the conv with its mixed kernel plus the mixing itself (experts x kernel
elements per sample); its routing is a linear layer like any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from specdsl.ir import ModelIR
from specdsl.passes.lower import (
    INPUT,
    WEIGHTED_KINDS,
    Activation,
    BatchNorm,
    CondConv,
    Conv,
    Dropout,
    DropPath,
    Flatten,
    Linear,
    LoweredNetwork,
    Op,
    Slice,
    lower,
)

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


def op_tensor_elements(op: Op) -> int:
    """Elements of the canonical tensors an op owns: its parameters, and a BN's running statistics."""
    return sum(map(math.prod, op.tensors().values())) if isinstance(op, WEIGHTED_KINDS) else 0


def op_state_elements(op: Op) -> int:
    """Elements of the tensors an op owns that are state, not parameters: a BN's running mean and variance."""
    return 2 * op.channels if isinstance(op, BatchNorm) else 0


def op_params(op: Op) -> int:
    """Trainable parameters (a BN's running statistics are state, not parameters)."""
    return op_tensor_elements(op) - op_state_elements(op)


def op_macs(op: Op) -> int:
    """Multiply-accumulates of convs, CondConvs and linear layers, which all own weights (`WEIGHTED_KINDS`): an op
    without weights is free."""
    if isinstance(op, Conv):
        return math.prod(op.weight_shape) * op.out_shape[1] * op.out_shape[2]
    if isinstance(op, CondConv):
        kernel = math.prod(op.expert_shape)
        return kernel * op.out_shape[1] * op.out_shape[2] + op.experts * kernel
    if isinstance(op, Linear):
        return op.in_features * op.out_features
    return 0


_VIEWS = (Flatten, Slice)  # ops whose output is a view of their input: no new tensor


def op_activation_elements(op: Op) -> int:
    """Elements of the tensor an op adds to a forward pass (a flatten or a channel slice is a view and adds none)."""
    return 0 if isinstance(op, _VIEWS) else math.prod(op.out_shape)


@dataclass(frozen=True, slots=True)
class Footprint:
    """Every op's figures and the network's memory, folded in one pass over a lowering: resolve's memory check
    and `analyze` read the same one (`footprint_of`), so a network is counted once per IR."""

    params: tuple[int, ...]  # per op, in forward order
    macs: tuple[int, ...]
    activations: tuple[int, ...]  # `op_activation_elements` per op
    tensor_elements: int  # every canonical tensor: parameters and BN statistics
    peak_elements: int  # per sample, the largest sum of one op's inputs and output: what inference holds at once

    def build_bytes(self, dtype: str = "float32") -> int:
        """What building the network allocates at least: every canonical tensor plus the activations of one
        inference pass at batch 1, at ``dtype`` (`limits.MAX_BUILD_BYTES` bounds it)."""
        return (self.tensor_elements + self.peak_elements) * DTYPE_BYTES[dtype]


def footprint(net: LoweredNetwork) -> Footprint:
    """The figures of ``net``'s ops (see `Footprint`)."""
    params, macs, activations = [], [], []
    sizes = {INPUT: math.prod(net.input_shape)}
    tensors = peak = 0
    for op in net.ops:  # thousands of ops for a large network: each figure once, in one pass
        size = sizes[op.name] = math.prod(op.out_shape)
        held = size
        for name in op.inputs:
            held += sizes[name]
        if held > peak:
            peak = held
        activations.append(0 if isinstance(op, _VIEWS) else size)  # `op_activation_elements`
        if isinstance(op, WEIGHTED_KINDS):
            owned = op_tensor_elements(op)
            tensors += owned
            params.append(owned - op_state_elements(op))  # `op_params`, without counting the tensors twice
            macs.append(op_macs(op))
        else:  # no weights: no parameters and no MACs
            params.append(0)
            macs.append(0)
    return Footprint(tuple(params), tuple(macs), tuple(activations), tensors, peak)


def footprint_of(ir: ModelIR) -> Footprint:
    """The footprint of ``lower(ir)``, computed once per IR (`ModelIR.derived`)."""
    return ir.derived(("footprint",), lambda: footprint(lower(ir)))


def build_bytes(net: LoweredNetwork, dtype: str = "float32") -> int:
    """What building ``net`` allocates at least (`Footprint.build_bytes`)."""
    return footprint(net).build_bytes(dtype)


def count_macs(ir: ModelIR) -> int:
    return sum(op_macs(op) for op in lower(ir).ops)


class Backbone(BaseModel):
    """Params and MACs (per sample, at the lowering's resolution) of a network's ops: for a backbone
    (``lower(ir, features=...)``), the part that computes its taps, without the head."""

    params: int
    macs: int


def backbone(net: LoweredNetwork) -> Backbone:
    return Backbone(params=sum(op_params(op) for op in net.ops), macs=sum(op_macs(op) for op in net.ops))


class LayerRow(BaseModel):
    """One op of the per-layer table (`specdsl info --layers`)."""

    name: str
    op: str
    detail: str  # what the op does, e.g. "3x3/2 g96 16->96" for a conv
    shape: list[int]  # output shape per sample
    params: int
    macs: int


class Row(BaseModel):
    """One line of the per-stage table."""

    name: str
    blocks: int
    kind: str
    kernel: int  # the first block's (first) kernel
    kernels: list[list[int]] = []  # each distinct k x k kernel list of the blocks, in block order ([3, 5, 7]: MixConv)
    expansions: list[float] = []  # each distinct expansion ratio the blocks' spec lines give, in block order
    se_ratios: list[float] = []  # likewise the SE ratios (as written: of the input or expanded width, per se_width)
    in_channels: int
    out_channels: int
    stride: int
    input_size: int
    output_size: int
    params: int
    macs: int
    activation_bytes: int


class Report(BaseModel):
    name: str
    resolution: int
    batch_size: int
    dtype: str
    params: int
    macs: int
    blocks: int
    activation_bytes: int  # all intermediate tensors of one forward pass (what training keeps)
    peak_inference_bytes: int  # largest sum of an op's inputs and output
    stem: Row
    stages: list[Row]
    head: Row


def _detail(op: Op) -> str:
    if isinstance(op, Conv | CondConv):
        groups = f" g{op.groups}" if op.groups > 1 else ""
        extra = " +bias" if isinstance(op, Conv) and op.bias else ""
        extra += f" x{op.experts} experts" if isinstance(op, CondConv) else ""
        return f"{op.kernel}x{op.kernel}/{op.stride}{groups} {op.in_channels}->{op.out_channels}{extra}"
    if isinstance(op, Slice):
        return f"channels {op.start}:{op.stop}"
    if isinstance(op, Linear):
        return f"{op.in_features}->{op.out_features}"
    if isinstance(op, Activation):
        return op.function
    if isinstance(op, BatchNorm):
        return f"eps {op.eps:g} momentum {op.momentum:g}"
    if isinstance(op, DropPath | Dropout):
        return f"rate {op.rate:.4g}"
    return ""


def layer_rows(net: LoweredNetwork) -> list[LayerRow]:
    return [
        LayerRow(
            name=op.name, op=op.op, detail=_detail(op), shape=list(op.out_shape), params=op_params(op), macs=op_macs(op)
        )
        for op in net.ops
    ]


def _distinct(values: Iterable[Any]) -> list[Any]:
    return [value for value in dict.fromkeys(values) if value is not None]


def _row(
    name: str,
    positions: Sequence[int],
    figures: Footprint,
    *,
    scale: int,
    kind: str,
    blocks: int,
    kernel: int,
    io: tuple[int, ...],
    **stage: list[Any],
) -> Row:
    cin, cout, stride, size_in, size_out = io
    return Row(
        name=name,
        blocks=blocks,
        kind=kind,
        kernel=kernel,
        kernels=stage.get("kernels", [[kernel]]),
        expansions=stage.get("expansions", []),
        se_ratios=stage.get("se_ratios", []),
        in_channels=cin,
        out_channels=cout,
        stride=stride,
        input_size=size_in,
        output_size=size_out,
        params=sum([figures.params[i] for i in positions]),
        macs=sum([figures.macs[i] for i in positions]),
        activation_bytes=sum([figures.activations[i] for i in positions]) * scale,
    )


def _split(net: LoweredNetwork) -> tuple[list[int], dict[int, list[int]], list[int]]:
    """Positions of the ops before the first block (stem), of each block's by global index, and of those after
    (head)."""
    stem: list[int] = []
    blocks: dict[int, list[int]] = {}
    head: list[int] = []
    for position, op in enumerate(net.ops):
        if op.block is not None:
            blocks.setdefault(op.block, []).append(position)
        else:
            (head if blocks else stem).append(position)
    return stem, blocks, head


def analyze(ir: ModelIR, *, batch_size: int = 1, dtype: str = "float32") -> Report:
    """Analyse ``ir`` at its own resolution (`specdsl.analyze` re-resolves for another one)."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_BYTES)}")
    scale = batch_size * DTYPE_BYTES[dtype]
    figures = footprint_of(ir)
    stem_ops, by_block, head_ops = _split(lower(ir))
    stem = ir.stem
    stem_row = _row(
        "stem",
        stem_ops,
        figures,
        scale=scale,
        kind="conv",
        blocks=1,
        kernel=stem.kernel,
        io=(stem.in_channels, stem.out_channels, stem.stride, stem.input_size, stem.output_size),
    )
    stage_rows = []
    for stage in ir.stages:
        first, last = stage.blocks[0], stage.blocks[-1]
        ratios = [ir.ratios(block) for block in stage.blocks]
        stage_rows.append(
            _row(
                f"stage {stage.index}",
                [i for block in stage.blocks for i in by_block[block.global_index]],
                figures,
                scale=scale,
                kind=first.kind.value + ("+se" if first.se_channels else ""),
                blocks=len(stage.blocks),
                kernel=first.kernel,
                io=(first.in_channels, last.out_channels, first.stride, first.input_size, last.output_size),
                kernels=[list(kernels) for kernels in _distinct(block.spatial_kernels for block in stage.blocks)],
                expansions=_distinct(expansion for expansion, _ in ratios),
                se_ratios=_distinct(se_ratio for _, se_ratio in ratios),
            )
        )
    head = ir.head
    head_row = _row(
        "head",
        head_ops,
        figures,
        scale=scale,
        kind="conv+fc" if head.conv_channels else "fc",
        blocks=1,
        kernel=1,
        io=(head.in_channels, head.classes, 1, head.input_size, 1),
    )
    peak = figures.peak_elements
    rows = [stem_row, *stage_rows, head_row]
    return Report(
        name=ir.name,
        resolution=ir.resolution,
        batch_size=batch_size,
        dtype=dtype,
        params=sum(row.params for row in rows),
        macs=sum(row.macs for row in rows),
        blocks=len(ir.blocks),
        activation_bytes=sum(row.activation_bytes for row in rows),
        peak_inference_bytes=peak * scale,
        stem=stem_row,
        stages=stage_rows,
        head=head_row,
    )
