"""Shared helpers for the ONNX backend tests (torch-free): IRs by name, structure-only models, logits."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import numpy as np
import onnx_ir

import specdsl
from specdsl.backends.onnx import session
from specdsl.backends.onnx.graph import GraphOptions
from specdsl.backends.onnx.model import to_model
from specdsl.ir import ModelIR
from specdsl.passes.lower import Shape, lower

THREADS = 2  # the CI machine's cores; onnxruntime's default would be one per core anyway


@functools.cache
def load_ir(name: str) -> ModelIR:
    """The IR of a shipped spec (parsed once per session)."""
    return specdsl.load(name)


def logits(model: onnx_ir.Model | str | Path, x: np.ndarray) -> np.ndarray:
    """onnxruntime CPU logits of ``model`` for NCHW float32 ``x``."""
    return session(model, threads=THREADS).run(["logits"], {"input": x})[0]


class ExternalZeros:
    """Tensor source for structure-only models: every initializer is a reference into one external data file
    of zeros, created sparse (`write`), so even l2's graph is checked without materialising 1.9 GB of weights."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.size = 0

    def __call__(self, name: str, shape: Shape) -> onnx_ir.ExternalTensor:
        length = 4 * math.prod(shape)
        tensor = onnx_ir.ExternalTensor(
            self.location,
            offset=self.size,
            length=length,
            dtype=onnx_ir.DataType.FLOAT,
            shape=onnx_ir.Shape(shape),
            name=name,
        )
        self.size += length
        return tensor

    def write(self, directory: Path) -> None:
        with open(directory / self.location, "wb") as handle:
            handle.truncate(self.size)  # a hole: no disk blocks are written


def structure_only(ir: ModelIR, directory: Path, options: GraphOptions | None = None) -> Path:
    """Write ``ir``'s model with zero weights held externally (sparse); return the .onnx path."""
    source = ExternalZeros(f"{ir.name}.onnx.data")
    model = to_model(lower(ir), source, options or GraphOptions())
    path = directory / f"{ir.name}.onnx"
    path.write_bytes(onnx_ir.to_proto(model).SerializeToString())
    source.write(directory)
    assert os.path.getsize(directory / source.location) == source.size
    return path
