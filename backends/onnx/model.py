"""IR -> `onnx_ir.Model`: canonical weights (BN folded unless kept), the graph, metadata, optionally float16."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir

from specdsl.ir import ModelIR
from specdsl.passes.features import Features, table
from specdsl.passes.lower import LoweredNetwork, Shape, lower_for_build

from .graph import GraphOptions, TensorSource, to_graph

DEFAULT_OPSET = 18
OPSETS = range(17, 22)  # all tested; every emitted op exists since opset 14 (HardSwish), TensorRT documents <= 20
DTYPES = ("float32", "float16")

Weights = str | Path | Mapping[str, Any] | None


def check_options(*, dtype: str, opset: int) -> None:
    """Refuse an opset or dtype this backend does not emit, before any work."""
    if opset not in OPSETS:
        raise ValueError(f"the ONNX backend emits opsets {OPSETS.start} to {OPSETS.stop - 1}, not {opset}")
    if dtype not in DTYPES:
        raise ValueError(f"the ONNX backend emits {' or '.join(DTYPES)}, not {dtype!r}")


def canonical_state(ir: ModelIR, weights: Weights, seed: int) -> dict[str, np.ndarray]:
    """Canonical float32 tensors: from a safetensors path, a name -> tensor mapping (checked), or the reference
    init drawn from ``seed`` (`specdsl.weights.initial`)."""
    from specdsl import weights as canonical

    if weights is None:
        return canonical.initial(ir, seed)
    return canonical.read(weights, ir)  # checked, every float dtype cast to float32


def array_source(state: Mapping[str, np.ndarray]) -> TensorSource:
    """Initializers from in-memory arrays (no copy); a name the graph needs and ``state`` lacks is an error."""
    from specdsl.weights import WeightsError

    def source(name: str, shape: Shape) -> onnx_ir.TensorProtocol:
        if name not in state:
            raise WeightsError(f"the weights have no tensor {name!r} {shape}")
        return onnx_ir.tensor(state[name], name=name)

    return source


def metadata(net: LoweredNetwork, options: GraphOptions, dtype: str) -> dict[str, str]:
    """``metadata_props``: what the file is and what it expects as input (docs/onnx.md lists the keys)."""
    from specdsl import __version__
    from specdsl.weights import preprocessing

    channels, height, width = net.input_shape
    return {
        "specdsl.spec": net.name,
        "specdsl.version": __version__,
        "specdsl.network_sha256": net.sha256(),
        "input.layout": "NCHW",
        "input.channels": str(channels),
        "input.resolution": str(height) if height == width else f"{height}x{width}",
        "input.size": "dynamic" if options.dynamic_size else "static",
        "input.normalization": "(pixel / 255 - mean) / std",
        "input.mean": json.dumps(list(net.normalization.mean)),
        "input.std": json.dumps(list(net.normalization.std)),
        "batch_norm": "kept" if options.keep_bn else "folded",
        "dtype": dtype,
        **({"outputs": json.dumps(table(net))} if net.taps else {}),
        **preprocessing(net),  # what the weights expect, as imported weights files record it
    }


def to_model(
    net: LoweredNetwork, tensors: TensorSource, options: GraphOptions, dtype: str = "float32"
) -> onnx_ir.Model:
    """The model file's content: graph, opset, IR version, producer and metadata; float16 if asked."""
    from specdsl import __version__

    check_options(dtype=dtype, opset=options.opset)
    graph = to_graph(net, tensors, options)
    ir_version = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", options.opset)])
    model = onnx_ir.Model(
        graph,
        ir_version=ir_version,
        producer_name="specdsl",
        producer_version=__version__,
        metadata_props=metadata(net, options, dtype),
    )
    if dtype == "float16":
        from .precision import to_float16

        model = to_float16(model, infer_shapes=options.dynamic_size)
    return model


def build(
    ir: ModelIR,
    *,
    weights: Weights = None,
    seed: int = 0,
    dtype: str = "float32",
    dynamic_size: bool = False,
    opset: int = DEFAULT_OPSET,
    keep_bn: bool = False,
    features: Features = None,
    out_indices: Sequence[int] | None = None,
) -> onnx_ir.Model:
    """The ONNX model of ``ir`` in memory (`onnx_ir.Model`; ``onnx_ir.to_proto`` gives a ModelProto).

    ``weights``: a canonical safetensors path or a name -> tensor mapping; without it, the reference
    init drawn from ``seed`` with numpy. ``dtype="float16"``: float16 weights and arithmetic, float32
    input and output. ``dynamic_size``: any input height and width. ``keep_bn``: BatchNormalization
    nodes instead of folding BN into the convs. ``features`` / ``out_indices``: a backbone
    (`specdsl.passes.features`), one graph output per tap named by it; it reads the full network's weights and
    leaves out the head's.
    """
    from specdsl import weights as canonical

    check_options(dtype=dtype, opset=opset)
    net = lower_for_build(ir, features, out_indices)
    state = canonical_state(ir, weights, seed)
    if not keep_bn:
        state = canonical.fold_batch_norm(net, state)
    options = GraphOptions(opset=opset, dynamic_size=dynamic_size, keep_bn=keep_bn)
    return to_model(net, array_source(state), options, dtype)
