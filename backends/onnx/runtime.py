"""onnxruntime sessions for emitted models (CPU), with the options the tests and benchmarks state."""

from __future__ import annotations

from pathlib import Path

import onnx_ir
import onnxruntime

#: Graph optimisation levels by name. "all" includes layout rewrites (NCHWc) that are only valid for the
#: machine at hand: save optimised models at "extended" at most.
LEVELS = {
    "disable": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session(
    model: onnx_ir.Model | str | Path, *, threads: int | None = None, level: str = "all"
) -> onnxruntime.InferenceSession:
    """A CPU InferenceSession for an in-memory model or a file (files may have external data; an in-memory
    model is serialised, which protobuf limits to 2 GB: open large models from their files).

    ``threads``: intra-op threads (onnxruntime's default is one per core; say it explicitly on a
    shared machine); ``level``: a key of `LEVELS`.
    """
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    if threads is not None:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, str | Path) else onnx_ir.to_proto(model).SerializeToString()
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
