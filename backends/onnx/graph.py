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

import onnx_ir

from specdsl.passes.lower import (
    INPUT,
    Activation,
    BatchNorm,
    Concat,
    Conv,
    Dropout,
    DropPath,
    Linear,
    LoweredNetwork,
    Op,
)
from specdsl.passes.lower import Slice as SliceOp

from .cond_conv import cond_conv
from .emitter import BATCH, OUTPUT, Emitter, GraphOptions, TensorSource, window

# ------------------------------------------------------------------------------------------- op kinds


def _conv(e: Emitter, op: Conv) -> onnx_ir.Value:
    inputs = [e.input(op), e.initializer(f"{op.name}.weight", op.weight_shape)]
    if op.bias or op.name in e.folded:
        inputs.append(e.initializer(f"{op.name}.bias", (op.out_channels,)))
    return e.node("Conv", inputs, op.name, op.out_shape, {**window(e, op), "group": op.groups})


def _batch_norm(e: Emitter, op: BatchNorm) -> onnx_ir.Value:
    if op.folds_into in e.folded:
        return e.input(op)  # folded: the conv's output already is this op's
    params = [e.initializer(name, shape) for name, shape in op.tensors().items()]  # weight, bias, mean, var
    attributes = {"epsilon": op.eps, "momentum": 1.0 - op.momentum}  # ONNX keeps TF's momentum convention
    return e.node("BatchNormalization", [e.input(op), *params], op.name, op.out_shape, attributes)


def _silu(e: Emitter, op: Activation, x: onnx_ir.Value) -> onnx_ir.Value:
    gate = e.node("Sigmoid", [x], f"{op.name}.sigmoid", op.out_shape)
    return e.node("Mul", [x, gate], op.name, op.out_shape)  # x * sigmoid(x): onnxruntime and TensorRT fuse it


def _relu6(e: Emitter, op: Activation, x: onnx_ir.Value) -> onnx_ir.Value:
    return e.node("Clip", [x, e.constant("clip.min", 0.0), e.constant("clip.max", 6.0)], op.name, op.out_shape)


def _unary(op_type: str, **attributes: object) -> Callable[[Emitter, Activation, onnx_ir.Value], onnx_ir.Value]:
    def translate(e: Emitter, op: Activation, x: onnx_ir.Value) -> onnx_ir.Value:
        return e.node(op_type, [x], op.name, op.out_shape, dict(attributes))

    return translate


#: Activation function -> its translation; hard_sigmoid(x) = relu6(x + 3) / 6 = clip(x / 6 + 1 / 2, 0, 1).
ACTIVATIONS: dict[str, Callable[[Emitter, Activation, onnx_ir.Value], onnx_ir.Value]] = {
    "silu": _silu,
    "relu": _unary("Relu"),
    "relu6": _relu6,
    "hard_swish": _unary("HardSwish"),
    "sigmoid": _unary("Sigmoid"),
    "hard_sigmoid": _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
}


def _activation(e: Emitter, op: Activation) -> onnx_ir.Value:
    translate = ACTIVATIONS.get(op.function)
    if translate is None:
        raise NotImplementedError(f"the ONNX backend has no translation for activation {op.function!r} ({op.name})")
    return translate(e, op, e.input(op))


def _identity(e: Emitter, op: DropPath | Dropout) -> onnx_ir.Value:
    return e.input(op)  # training-only ops: identity in an inference graph


def _linear(e: Emitter, op: Linear) -> onnx_ir.Value:
    inputs = [e.input(op), e.initializer(f"{op.name}.weight", (op.out_features, op.in_features))]
    if op.bias:
        inputs.append(e.initializer(f"{op.name}.bias", (op.out_features,)))
    return e.node("Gemm", inputs, op.name, op.out_shape, {"transB": 1})


def _binary(op_type: str) -> Callable[[Emitter, Op], onnx_ir.Value]:
    def translate(e: Emitter, op: Op) -> onnx_ir.Value:
        return e.node(op_type, [e.input(op, 0), e.input(op, 1)], op.name, op.out_shape)

    return translate


def _slice(e: Emitter, op: SliceOp) -> onnx_ir.Value:
    """Channels start:stop: constant bounds on axis 1 (TensorRT wants ``axes`` an initializer)."""
    bounds = [e.ints("slice.starts", [op.start]), e.ints("slice.ends", [op.stop]), e.ints("axes", [1])]
    return e.node("Slice", [e.input(op), *bounds], op.name, op.out_shape)


def _concat(e: Emitter, op: Concat) -> onnx_ir.Value:
    return e.node("Concat", [e.values[name] for name in op.inputs], op.name, op.out_shape, {"axis": 1})


#: Op kind -> translation. An op kind missing here is an error that names it.
TRANSLATIONS: dict[str, Callable[[Emitter, Op], onnx_ir.Value]] = {
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
    "cond_conv": cond_conv,
    "slice": _slice,
    "concat": _concat,
}


def to_graph(net: LoweredNetwork, tensors: TensorSource, options: GraphOptions) -> onnx_ir.Graph:
    """The ONNX graph computing ``net`` in inference mode, initializers from ``tensors``."""
    e = Emitter(net, tensors, options)
    for op in net.ops:
        translate = TRANSLATIONS.get(op.op)
        if translate is None:
            raise NotImplementedError(f"the ONNX backend has no translation for op kind {op.op!r} ({op.name})")
        e.values[op.name] = translate(e, op)
    return onnx_ir.Graph(
        [e.values[INPUT]],
        _tap_outputs(e, net) if net.taps else [_logits(e, net)],
        nodes=e.nodes,
        initializers=list(e.initializers.values()),
        opset_imports={"": options.opset},
        name=net.name,
    )


def _logits(e: Emitter, net: LoweredNetwork) -> onnx_ir.Value:
    logits = e.values[net.output]
    if logits.producer() is None:
        raise ValueError(f"{net.output} computes nothing in an inference graph; it cannot be the output")
    logits.name = OUTPUT
    logits.shape = onnx_ir.Shape([BATCH, *net.shapes()[net.output]])
    return logits


def _tap_outputs(e: Emitter, net: LoweredNetwork) -> list[onnx_ir.Value]:
    """A backbone's graph outputs: one per tap, named by the tap, (batch, C, H, W) at the lowering's size or
    (batch, C, ?, ?) in dynamic-size graphs. A tap on an op that computes nothing here (a folded BN: its value is
    its conv's) renames that value; only where one value is two taps does the second come from an Identity node."""
    outputs: list[onnx_ir.Value] = []
    for tap in net.taps:
        value = e.values[tap.name]
        if value.producer() is None or value in outputs:
            value = e.node("Identity", [value], tap.name, None)
        value.name = tap.name
        channels, height, width = tap.shape
        if e.options.dynamic_size:
            value.shape = onnx_ir.Shape([BATCH, channels, None, None])
        else:
            value.shape = onnx_ir.Shape([BATCH, channels, height, width])
        outputs.append(value)
    return outputs
