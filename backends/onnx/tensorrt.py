"""Is a graph ready for TensorRT? The checks every static specdsl model passes (docs/onnx.md, "TensorRT").

TensorRT builds an engine for fixed shapes (or an optimisation profile of ranges) and its ONNX parser
supports a listed set of ops. The failures users of framework exporters meet are Pad nodes whose pads
are computed from the input shape (dynamic TF SAME padding), shape arithmetic (Shape, Gather, a
Reshape or Slice fed computed numbers, ...), and ops outside the list. `problems` names every such
thing in a model.
"""

from __future__ import annotations

import onnx

from .emitter import BATCH

#: The ONNX ops specdsl emits, each supported for FP32 and FP16 by TensorRT's ONNX parser
#: (onnx/onnx-tensorrt, docs/operators.md, "ONNX-TensorRT 10.1 GA": opsets 9 to 20).
ALLOWLIST = frozenset(
    {
        "Add",
        "BatchNormalization",
        "Cast",
        "Clip",
        "Concat",
        "Conv",
        "Flatten",
        "Gemm",
        "GlobalAveragePool",
        "HardSigmoid",
        "HardSwish",
        "MatMul",
        "Mul",
        "Relu",
        "Reshape",
        "Sigmoid",
        "Slice",
        "Transpose",
    }
)
#: The newest opset that parser documents.
MAX_OPSET = 20
#: Ops that compute with tensor shapes or pad explicitly: never in a static specdsl graph.
SHAPE_OPS = frozenset(
    {"Shape", "Size", "Gather", "Expand", "ConstantOfShape", "Range", "NonZero", "Squeeze", "Unsqueeze", "Tile",
     "Resize", "Pad"}
)  # fmt: skip
#: Ops whose inputs after the first are shapes or indices: constants (initializers) in a static specdsl graph.
CONSTANT_OPERANDS = frozenset({"Reshape", "Slice"})


def problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT might reject ``model`` or need more than a batch range to build it; empty if nothing.

    Checks: no Pad and no shape-computing node, every op in `ALLOWLIST` (default domain), the shapes and
    indices of Reshape and Slice constants, opset at most `MAX_OPSET`, and after strict ONNX shape
    inference every tensor static apart from a leading ``batch`` dimension; tensors computed from
    initializers alone (a CondConv's experts rearranged, which TensorRT folds into weights when it
    builds the engine) entirely static.
    """
    found = []
    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    if opset > MAX_OPSET:
        found.append(f"opset {opset} is newer than TensorRT's parser documents ({MAX_OPSET})")
    initializers = {tensor.name for tensor in model.graph.initializer}
    constants = set(initializers)
    for node in model.graph.node:
        if set(node.input) <= constants:
            constants.update(node.output)
        if node.op_type in SHAPE_OPS:
            found.append(f"{node.name}: {node.op_type} (pads or shape arithmetic)")
        elif node.op_type not in ALLOWLIST or node.domain not in ("", "ai.onnx"):
            found.append(f"{node.name}: {node.domain or 'ai.onnx'}.{node.op_type} is not in the allowlist")
        elif node.op_type in CONSTANT_OPERANDS and not set(node.input[1:]) <= initializers:
            found.append(f"{node.name}: {node.op_type} with computed shape or indices")
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = list(tensor.shape.dim) if tensor.HasField("shape") else None
        if not dims:
            found.append(f"{value.name}: shape unknown")
        elif value.name in constants:
            if not all(dim.HasField("dim_value") for dim in dims):
                found.append(f"{value.name}: a constant of dynamic shape")
        elif dims[0].dim_param != BATCH:
            found.append(f"{value.name}: the leading dimension is not the symbolic {BATCH!r}")
        elif not all(dim.HasField("dim_value") for dim in dims[1:]):
            found.append(f"{value.name}: dynamic dimensions {[dim.dim_param or dim.dim_value for dim in dims]}")
    return found
