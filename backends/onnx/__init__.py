"""ONNX backend: a lowered network as an ONNX graph, built with onnx_ir straight from the lowering (no framework).

`graph` translates the ops (one function per op kind), `model` adds weights, metadata and float16,
`emit` writes ``<name>.onnx`` (external data when large), `runtime` opens onnxruntime sessions and
`tensorrt` checks a graph for TensorRT, `quantize` makes int8 QDQ models (docs/edge.md). docs/onnx.md
describes the files.
"""

from __future__ import annotations

from .emit import emit
from .model import DEFAULT_OPSET, OPSETS, build
from .quantize import check_quantize
from .runtime import session

__all__ = ["DEFAULT_OPSET", "OPSETS", "build", "check_quantize", "emit", "session"]
