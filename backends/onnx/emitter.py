"""The graph under construction: nodes, initializers and op values, shared by the translations (`graph`,
`cond_conv`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir

from specdsl.passes.lower import INPUT, BatchNorm, CondConv, Conv, LoweredNetwork, Op, Shape

OUTPUT = "logits"
BATCH = "batch"  # the symbolic batch dimension
HEIGHT, WIDTH = "height", "width"  # symbolic spatial dimensions of --dynamic-size graphs
FLOAT = onnx_ir.DataType.FLOAT

#: The tensor behind an initializer, asked for by canonical name and expected shape.
TensorSource = Callable[[str, Shape], onnx_ir.TensorProtocol]


@dataclass(frozen=True)
class GraphOptions:
    """How to translate: ``opset`` (ONNX default domain), ``dynamic_size`` (any input height and width:
    TF SAME convs get ``auto_pad=SAME_UPPER`` instead of fixed pads) and ``keep_bn`` (BatchNormalization
    nodes instead of folding)."""

    opset: int = 18
    dynamic_size: bool = False
    keep_bn: bool = False


class Emitter:
    """Collects nodes and initializers; ``values`` maps op names (and ``input``) to the ONNX value holding
    each op's output."""

    def __init__(self, net: LoweredNetwork, tensors: TensorSource, options: GraphOptions) -> None:
        self.options = options
        self.tensors = tensors
        self.nodes: list[onnx_ir.Node] = []
        self.initializers: dict[str, onnx_ir.Value] = {}
        spatial = [HEIGHT, WIDTH] if options.dynamic_size else list(net.input_shape[1:])
        image = onnx_ir.Value(
            name=INPUT, type=onnx_ir.TensorType(FLOAT), shape=onnx_ir.Shape([BATCH, net.input_shape[0], *spatial])
        )
        self.values: dict[str, onnx_ir.Value] = {INPUT: image}
        #: the convs a BN is folded into
        self.folded = {
            op.folds_into for op in net.ops if isinstance(op, BatchNorm) and op.folds_into and not options.keep_bn
        }

    def input(self, op: Op, index: int = 0) -> onnx_ir.Value:
        return self.values[op.inputs[index]]

    def initializer(self, name: str, shape: Shape) -> onnx_ir.Value:
        """The initializer ``name`` (created once), its tensor from the source, checked against ``shape``."""
        if name not in self.initializers:
            tensor = self.tensors(name, shape)
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"tensor {name!r} has shape {tuple(tensor.shape)}, the graph needs {tuple(shape)}")
            self.initializers[name] = onnx_ir.Value(name=name, const_value=tensor)
        return self.initializers[name]

    def constant(self, name: str, value: float | np.ndarray) -> onnx_ir.Value:
        """A float32 constant (Clip's bounds, a CondConv's one-hot patches), created once and shared by every node
        that reads it under ``name``."""
        if name not in self.initializers:
            tensor = onnx_ir.tensor(np.asarray(value, dtype=np.float32), name=name)
            self.initializers[name] = onnx_ir.Value(name=name, const_value=tensor)
        return self.initializers[name]

    def ints(self, role: str, values: Sequence[int]) -> onnx_ir.Value:
        """An int64 vector constant (a Reshape's shape, a Slice's bounds), shared by every node that reads these
        values in this role: named ``<role>.<v0>x<v1>...``."""
        name = f"{role}.{'x'.join(str(v) for v in values)}"
        if name not in self.initializers:
            tensor = onnx_ir.tensor(np.asarray(values, dtype=np.int64), name=name)
            self.initializers[name] = onnx_ir.Value(name=name, const_value=tensor)
        return self.initializers[name]

    def node(
        self,
        op_type: str,
        inputs: list[onnx_ir.Value],
        name: str,
        shape: Shape | None,
        attributes: dict[str, object] | None = None,
        *,
        batched: bool = True,
    ) -> onnx_ir.Value:
        """Append a node named ``name`` whose one output value is also ``name``; ``shape`` per sample (the whole
        shape where not ``batched``: arithmetic on weights), declared only in static graphs (ONNX shape
        inference derives the rest)."""
        node = onnx_ir.node(op_type, inputs, attributes or {}, name=name)
        out = node.outputs[0]
        out.name = name
        out.type = onnx_ir.TensorType(FLOAT)
        if shape is not None and not self.options.dynamic_size:
            out.shape = onnx_ir.Shape([BATCH, *shape] if batched else list(shape))
        self.nodes.append(node)
        return out


def window(e: Emitter, op: Conv | CondConv) -> dict[str, object]:
    """A conv-like op's kernel, stride and pads as Conv attributes: the lowering's pads (ONNX order: all begins,
    then all ends), or ``auto_pad=SAME_UPPER`` in dynamic-size graphs where the op has ``dynamic_padding``."""
    attributes: dict[str, object] = {"kernel_shape": [op.kernel, op.kernel], "strides": [op.stride, op.stride]}
    if op.dynamic_padding and e.options.dynamic_size:
        attributes["auto_pad"] = "SAME_UPPER"  # TF SAME at any size: output ceil(x / s), extra pixel at the end
    else:
        top, bottom, left, right = op.pads
        attributes["pads"] = [top, left, bottom, right]
    return attributes
