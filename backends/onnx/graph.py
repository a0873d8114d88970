"""A lowered network as an ONNX graph (`onnx_ir`): one translation function per op kind, nothing decided here.

Every node and value is named after the op it computes (``stages.1.0.expand.conv``) and every
initializer after its canonical tensor (``stages.1.0.expand.conv.weight``), so a graph reads like
the lowering and weights line up by name. The image is ``input`` (NCHW, float32, symbolic batch),
the result ``logits``.

Inference only: drop-path and dropout are identities (their input is wired through), and a BN the
lowering marks foldable (``folds_into``) is folded into its conv unless ``keep_bn``; the conv then
reads ``<conv>.bias``, which the tensor source must supply (`specdsl.weights.fold_batch_norm`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir

from specdsl.passes.lower import (
    INPUT,
    Activation,
    BatchNorm,
    Conv,
    Dropout,
    DropPath,
    Linear,
    LoweredNetwork,
    Op,
    Shape,
)

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


class _Emitter:
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

    def constant(self, name: str, number: float) -> onnx_ir.Value:
        """A float32 scalar initializer (Clip's bounds), created once and shared by every node that reads it."""
        if name not in self.initializers:
            tensor = onnx_ir.tensor(np.array(number, dtype=np.float32), name=name)
            self.initializers[name] = onnx_ir.Value(name=name, const_value=tensor)
        return self.initializers[name]

    def node(
        self,
        op_type: str,
        inputs: list[onnx_ir.Value],
        name: str,
        shape: Shape | None,
        attributes: dict[str, object] | None = None,
    ) -> onnx_ir.Value:
        """Append a node named ``name`` whose one output value is also ``name``; ``shape`` per sample,
        declared only in static graphs (ONNX shape inference derives the rest)."""
        node = onnx_ir.node(op_type, inputs, attributes or {}, name=name)
        out = node.outputs[0]
        out.name = name
        out.type = onnx_ir.TensorType(FLOAT)
        if shape is not None and not self.options.dynamic_size:
            out.shape = onnx_ir.Shape([BATCH, *shape])
        self.nodes.append(node)
        return out


# ------------------------------------------------------------------------------------------- op kinds


def _conv(e: _Emitter, op: Conv) -> onnx_ir.Value:
    inputs = [e.input(op), e.initializer(f"{op.name}.weight", op.weight_shape)]
    if op.bias or op.name in e.folded:
        inputs.append(e.initializer(f"{op.name}.bias", (op.out_channels,)))
    attributes: dict[str, object] = {
        "kernel_shape": [op.kernel, op.kernel],
        "strides": [op.stride, op.stride],
        "group": op.groups,
    }
    if op.dynamic_padding and e.options.dynamic_size:
        attributes["auto_pad"] = "SAME_UPPER"  # TF SAME at any size: output ceil(x / s), extra pixel at the end
    else:
        top, bottom, left, right = op.pads
        attributes["pads"] = [top, left, bottom, right]  # ONNX order: all begins, then all ends
    return e.node("Conv", inputs, op.name, op.out_shape, attributes)


def _batch_norm(e: _Emitter, op: BatchNorm) -> onnx_ir.Value:
    if op.folds_into in e.folded:
        return e.input(op)  # folded: the conv's output already is this op's
    params = [e.initializer(name, shape) for name, shape in op.tensors().items()]  # weight, bias, mean, var
    attributes = {"epsilon": op.eps, "momentum": 1.0 - op.momentum}  # ONNX keeps TF's momentum convention
    return e.node("BatchNormalization", [e.input(op), *params], op.name, op.out_shape, attributes)


def _silu(e: _Emitter, op: Activation, x: onnx_ir.Value) -> onnx_ir.Value:
    gate = e.node("Sigmoid", [x], f"{op.name}.sigmoid", op.out_shape)
    return e.node("Mul", [x, gate], op.name, op.out_shape)  # x * sigmoid(x): onnxruntime and TensorRT fuse it


def _relu6(e: _Emitter, op: Activation, x: onnx_ir.Value) -> onnx_ir.Value:
    return e.node("Clip", [x, e.constant("clip.min", 0.0), e.constant("clip.max", 6.0)], op.name, op.out_shape)


def _unary(op_type: str, **attributes: object) -> Callable[[_Emitter, Activation, onnx_ir.Value], onnx_ir.Value]:
    def translate(e: _Emitter, op: Activation, x: onnx_ir.Value) -> onnx_ir.Value:
        return e.node(op_type, [x], op.name, op.out_shape, dict(attributes))

    return translate


#: Activation function -> its translation; hard_sigmoid(x) = relu6(x + 3) / 6 = clip(x / 6 + 1 / 2, 0, 1).
ACTIVATIONS: dict[str, Callable[[_Emitter, Activation, onnx_ir.Value], onnx_ir.Value]] = {
    "silu": _silu,
    "relu": _unary("Relu"),
    "relu6": _relu6,
    "hard_swish": _unary("HardSwish"),
    "sigmoid": _unary("Sigmoid"),
    "hard_sigmoid": _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
}


def _activation(e: _Emitter, op: Activation) -> onnx_ir.Value:
    translate = ACTIVATIONS.get(op.function)
    if translate is None:
        raise NotImplementedError(f"the ONNX backend has no translation for activation {op.function!r} ({op.name})")
    return translate(e, op, e.input(op))


def _identity(e: _Emitter, op: DropPath | Dropout) -> onnx_ir.Value:
    return e.input(op)  # training-only ops: identity in an inference graph


def _linear(e: _Emitter, op: Linear) -> onnx_ir.Value:
    inputs = [e.input(op), e.initializer(f"{op.name}.weight", (op.out_features, op.in_features))]
    if op.bias:
        inputs.append(e.initializer(f"{op.name}.bias", (op.out_features,)))
    return e.node("Gemm", inputs, op.name, op.out_shape, {"transB": 1})


def _binary(op_type: str) -> Callable[[_Emitter, Op], onnx_ir.Value]:
    def translate(e: _Emitter, op: Op) -> onnx_ir.Value:
        return e.node(op_type, [e.input(op, 0), e.input(op, 1)], op.name, op.out_shape)

    return translate


#: Op kind -> translation. An op kind missing here is an error that names it.
TRANSLATIONS: dict[str, Callable[[_Emitter, Op], onnx_ir.Value]] = {
    "conv": _conv,
    "batch_norm": _batch_norm,
    "activation": _activation,
    "global_avg_pool": lambda e, op: e.node("GlobalAveragePool", [e.input(op)], op.name, op.out_shape),
    "flatten": lambda e, op: e.node("Flatten", [e.input(op)], op.name, op.out_shape, {"axis": 1}),
    "mul": _binary("Mul"),
    "add": _binary("Add"),
    "drop_path": _identity,
    "dropout": _identity,
    "linear": _linear,
}


def to_graph(net: LoweredNetwork, tensors: TensorSource, options: GraphOptions) -> onnx_ir.Graph:
    """The ONNX graph computing ``net`` in inference mode, initializers from ``tensors``."""
    e = _Emitter(net, tensors, options)
    for op in net.ops:
        translate = TRANSLATIONS.get(op.op)
        if translate is None:
            raise NotImplementedError(f"the ONNX backend has no translation for op kind {op.op!r} ({op.name})")
        e.values[op.name] = translate(e, op)
    logits = e.values[net.output]
    if logits.producer() is None:
        raise ValueError(f"{net.output} computes nothing in an inference graph; it cannot be the output")
    logits.name = OUTPUT
    logits.shape = onnx_ir.Shape([BATCH, *net.shapes()[net.output]])
    return onnx_ir.Graph(
        [e.values[INPUT]],
        [logits],
        nodes=e.nodes,
        initializers=list(e.initializers.values()),
        opset_imports={"": options.opset},
        name=net.name,
    )
