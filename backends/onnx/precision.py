"""float16 models through onnxruntime's maintained converter (`onnxruntime.transformers.float16`).

The converter rewrites initializers and value types to float16 and, with ``keep_io_types``, puts a
Cast after ``input`` and before ``logits`` so callers keep feeding and reading float32. It leaves the
opset as it is (it only reads it for Resize, which these graphs do not contain).
"""

from __future__ import annotations

import onnx_ir


def to_float16(model: onnx_ir.Model, *, infer_shapes: bool) -> onnx_ir.Model:
    """``model`` in float16 with float32 input and output.

    ``infer_shapes``: let the converter run ONNX shape inference first. Static graphs declare every
    value's type already, and skipping it keeps models over protobuf's 2 GB limit convertible.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx_ir.to_proto(model), keep_io_types=True, disable_shape_infer=not infer_shapes)
    model = onnx_ir.from_proto(proto)
    model.graph.sort()  # the converter appends its input Cast after the nodes that read it
    return model
