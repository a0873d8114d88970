"""ONNX backend: a lowered network as an ONNX graph, built with onnx_ir straight from the lowering (no framework).

`graph` translates the ops (one function per op kind), `model` adds weights, metadata and float16,
`emit` writes ``<name>.onnx`` (external data when large), `runtime` opens onnxruntime sessions and
`tensorrt` checks a graph for TensorRT, `quantize` makes int8 QDQ models (docs/edge.md). docs/onnx.md
describes the files.
"""

from __future__ import annotations

from specdsl.backends import refusing

from . import emit as _emit
from . import model as _model
from .model import DEFAULT_OPSET, OPSETS
from .quantize import check_quantize
from .runtime import session

#: The contract's checks on every keyword (`specdsl.backends.refusing`).
build = refusing("onnx", _model.build)
emit = refusing("onnx", _emit.emit, passes_to=_model.build)

__all__ = ["DEFAULT_OPSET", "OPSETS", "build", "check_quantize", "emit", "session"]
