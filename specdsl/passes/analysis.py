"""Parameters, multiply-accumulates and activation memory, computed from the IR alone.

Operation names follow the canonical weight names (docs/weights.md), so a per-layer
report lines up with the weights file.

Every figure comes from one walk over the network's operations (`operations`),
so the per-stage table, the totals and the memory estimate cannot disagree.
MACs count convolutions and the classifier (what torch.utils.flop_counter
counts, halved); batch norm, activations, pooling and SE multiplies are free.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel

from specdsl.ir import Block, ModelIR
from specdsl.vocabulary import BlockKind

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}


@dataclass(frozen=True)
class Op:
    """One tensor-producing operation of a forward pass, per sample."""

    name: str
    params: int
    macs: int
    out_elements: int  # elements of the output, one sample


def _conv(name: str, cin: int, cout: int, k: int, out_size: int, groups: int = 1, bias: bool = False) -> Op:
    weights = k * k * (cin // groups) * cout
    return Op(name, weights + (cout if bias else 0), weights * out_size * out_size, cout * out_size * out_size)


def _bn_act(name: str, channels: int, size: int, act: bool = True) -> Iterator[Op]:
    yield Op(f"{name}.bn", 2 * channels, 0, channels * size * size)
    if act:
        yield Op(f"{name}.act", 0, 0, channels * size * size)


def _se(name: str, block: Block, channels: int, size: int) -> Iterator[Op]:
    se = block.se_channels
    assert se is not None
    yield Op(f"{name}.se.pool", 0, 0, channels)
    yield _conv(f"{name}.se.reduce", channels, se, 1, 1, bias=True)
    yield Op(f"{name}.se.act", 0, 0, se)
    yield _conv(f"{name}.se.expand", se, channels, 1, 1, bias=True)
    yield Op(f"{name}.se.gate", 0, 0, channels)
    yield Op(f"{name}.se.scale", 0, 0, channels * size * size)


def block_operations(block: Block) -> Iterator[Op]:
    name = f"stages.{block.stage}.{block.index}"
    size_in, size_out, mid = block.input_size, block.output_size, block.mid_channels
    if block.kind is BlockKind.CONV:
        yield _conv(f"{name}.spatial.conv", block.in_channels, block.out_channels, block.kernel, size_out)
        yield from _bn_act(f"{name}.spatial", block.out_channels, size_out)
    else:
        if block.kind is BlockKind.MBCONV:
            if block.expand_channels is not None:
                yield _conv(f"{name}.expand.conv", block.in_channels, mid, 1, size_in)
                yield from _bn_act(f"{name}.expand", mid, size_in)
            yield _conv(f"{name}.spatial.conv", mid, mid, block.kernel, size_out, groups=mid)
            yield from _bn_act(f"{name}.spatial", mid, size_out)
        else:  # fused: the spatial conv does the expansion
            yield _conv(f"{name}.spatial.conv", block.in_channels, mid, block.kernel, size_out)
            yield from _bn_act(f"{name}.spatial", mid, size_out)
        if block.se_channels is not None:
            yield from _se(name, block, mid, size_out)
        yield _conv(f"{name}.project.conv", mid, block.out_channels, 1, size_out)
        yield from _bn_act(f"{name}.project", block.out_channels, size_out, act=False)
    if block.residual:
        yield Op(f"{name}.add", 0, 0, block.out_channels * size_out * size_out)


def stem_operations(ir: ModelIR) -> Iterator[Op]:
    stem = ir.stem
    yield _conv("stem.conv", stem.in_channels, stem.out_channels, stem.kernel, stem.output_size)
    yield from _bn_act("stem", stem.out_channels, stem.output_size)


def head_operations(ir: ModelIR) -> Iterator[Op]:
    head = ir.head
    if head.conv_channels is not None:
        yield _conv("head.conv", head.in_channels, head.conv_channels, 1, head.input_size)
        yield from _bn_act("head", head.conv_channels, head.input_size)
    yield Op("head.pool", 0, 0, head.features)
    yield Op("classifier", head.features * head.classes + head.classes, head.features * head.classes, head.classes)


def operations(ir: ModelIR) -> Iterator[Op]:
    yield from stem_operations(ir)
    for block in ir.blocks:
        yield from block_operations(block)
    yield from head_operations(ir)


def count_params(ir: ModelIR) -> int:
    return sum(op.params for op in operations(ir))


class Row(BaseModel):
    """One line of the per-stage table."""

    name: str
    blocks: int
    kind: str
    kernel: int
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
    peak_inference_bytes: int  # largest input + output of any single operation
    stem: Row
    stages: list[Row]
    head: Row


def _row(name: str, ops: list[Op], *, scale: int, kind: str, blocks: int, kernel: int, io: tuple[int, ...]) -> Row:
    cin, cout, stride, size_in, size_out = io
    return Row(
        name=name,
        blocks=blocks,
        kind=kind,
        kernel=kernel,
        in_channels=cin,
        out_channels=cout,
        stride=stride,
        input_size=size_in,
        output_size=size_out,
        params=sum(op.params for op in ops),
        macs=sum(op.macs for op in ops),
        activation_bytes=sum(op.out_elements for op in ops) * scale,
    )


def analyze(ir: ModelIR, *, batch_size: int = 1, dtype: str = "float32", resolution: int | None = None) -> Report:
    """Analyse `ir`, optionally at another input resolution (the network is re-resolved for it)."""
    if resolution is not None and resolution != ir.resolution:
        from specdsl.passes.resolve import resolve

        spec = ir.spec
        ir = resolve(spec.model_copy(update={"input": spec.input.model_copy(update={"resolution": resolution})}))
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_BYTES)}")
    scale = batch_size * DTYPE_BYTES[dtype]
    stem = ir.stem
    stem_row = _row(
        "stem",
        list(stem_operations(ir)),
        scale=scale,
        kind="conv",
        blocks=1,
        kernel=stem.kernel,
        io=(stem.in_channels, stem.out_channels, stem.stride, stem.input_size, stem.output_size),
    )
    stage_rows = []
    for stage in ir.stages:
        first, last = stage.blocks[0], stage.blocks[-1]
        ops = [op for block in stage.blocks for op in block_operations(block)]
        stage_rows.append(
            _row(
                f"stage {stage.index}",
                ops,
                scale=scale,
                kind=first.kind.value + ("+se" if first.se_channels else ""),
                blocks=len(stage.blocks),
                kernel=first.kernel,
                io=(first.in_channels, last.out_channels, first.stride, first.input_size, last.output_size),
            )
        )
    head = ir.head
    head_row = _row(
        "head",
        list(head_operations(ir)),
        scale=scale,
        kind="conv+fc" if head.conv_channels else "fc",
        blocks=1,
        kernel=1,
        io=(head.in_channels, head.classes, 1, head.input_size, 1),
    )
    all_ops = list(operations(ir))
    input_elements = ir.in_channels * ir.resolution * ir.resolution
    peak, previous = 0, input_elements
    for op in all_ops:
        peak = max(peak, previous + op.out_elements)
        previous = op.out_elements
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
