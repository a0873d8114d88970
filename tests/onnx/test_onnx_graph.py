"""The graph reads like the lowering: op mapping, canonical names, pads, folding, metadata, options."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_ir
import pytest

import specdsl
from specdsl import weights
from specdsl.backends.onnx import build
from specdsl.backends.onnx.graph import GraphOptions, to_graph
from specdsl.backends.onnx.model import array_source
from specdsl.passes.lower import Activation, BatchNorm, Conv, Dropout, DropPath, _Op, lower
from tests.conftest import ROOT, TINY_SPEC

from .helpers import load_ir


def nodes_by_name(model: onnx_ir.Model) -> dict[str, onnx_ir.Node]:
    return {node.name: node for node in model.graph}


def test_every_op_becomes_its_nodes_under_its_name() -> None:
    ir = load_ir("b0")
    net = lower(ir)
    model = build(ir)
    nodes = nodes_by_name(model)
    for op in net.ops:
        if isinstance(op, BatchNorm | DropPath | Dropout):
            assert op.name not in nodes  # folded, or identity in inference
            continue
        node = nodes[op.name]
        assert [value.name for value in node.outputs] == ["logits" if op.name == net.output else op.name]
        expected = {"global_avg_pool": "GlobalAveragePool", "flatten": "Flatten", "mul": "Mul", "add": "Add"}
        if op.op in expected:
            assert node.op_type == expected[op.op]
    readers = {value.name for node in model.graph for value in node.inputs}
    assert not {name for name in readers if name.endswith((".bn", ".drop_path", ".dropout"))}


def test_activations_map_to_native_ops() -> None:
    """SiLU is Sigmoid then Mul(x, sigmoid(x)); hard_swish HardSwish; relu6 Clip(0, 6); hard_sigmoid HardSigmoid."""
    text = TINY_SPEC.replace('name = "tiny"', 'name = "tiny"\ndefaults { activation = relu6 }')
    shapes = {
        "silu": ["Sigmoid", "Mul"],
        "relu": ["Relu"],
        "relu6": ["Clip"],
        "hard_swish": ["HardSwish"],
        "sigmoid": ["Sigmoid"],
        "hard_sigmoid": ["HardSigmoid"],
    }
    net = lower(specdsl.loads(text))
    state = weights.fold_batch_norm(net, weights.initial(specdsl.loads(text)))
    for function, op_types in shapes.items():
        ops = [dataclasses.replace(op, function=function) if isinstance(op, Activation) else op for op in net.ops]
        graph = to_graph(dataclasses.replace(net, ops=ops), array_source(state), GraphOptions())
        stem = [node for node in graph if node.name.startswith("stem.act")]
        assert [node.op_type for node in stem] == op_types
        if function == "silu":
            x = stem[1].inputs[0]
            assert stem[0].inputs[0] is x and stem[1].inputs[1] is stem[0].outputs[0]  # x * sigmoid(x)
        if function == "relu6":
            bounds = [value.const_value.numpy().item() for value in stem[0].inputs[1:]]
            assert bounds == [0.0, 6.0]
        if function == "hard_sigmoid":
            attributes = stem[0].attributes
            assert attributes["alpha"].as_float() == pytest.approx(1 / 6) and attributes["beta"].as_float() == 0.5


def test_conv_attributes_come_from_the_lowering() -> None:
    ir = load_ir("v2_s")
    net = lower(ir)
    nodes = nodes_by_name(build(ir))
    dynamic = nodes_by_name(build(ir, dynamic_size=True))
    for op in net.ops:
        if not isinstance(op, Conv):
            continue
        node = nodes[op.name]
        top, bottom, left, right = op.pads
        assert node.op_type == "Conv"
        assert list(node.attributes["pads"].as_ints()) == [top, left, bottom, right]
        assert list(node.attributes["strides"].as_ints()) == [op.stride] * 2
        assert node.attributes["group"].as_int() == op.groups
        assert [value.name for value in node.inputs] == [node.inputs[0].name, f"{op.name}.weight", f"{op.name}.bias"]
        other = dynamic[op.name]
        if op.dynamic_padding:
            assert other.attributes["auto_pad"].as_string() == "SAME_UPPER" and "pads" not in other.attributes
        else:
            assert list(other.attributes["pads"].as_ints()) == [top, left, bottom, right]
    assert any(op.pads[0] != op.pads[1] for op in net.ops if isinstance(op, Conv))  # asymmetric pads are tested


def test_initializers_are_the_canonical_tensors_folded() -> None:
    ir = load_ir("b0")
    net = lower(ir)
    state = weights.initial(ir, seed=3)
    folded = build(ir, weights=state)
    kept = build(ir, weights=state, keep_bn=True)
    assert set(kept.graph.initializers) == set(net.tensors())  # every canonical tensor, under its name
    assert Counter(node.op_type for node in kept.graph)["BatchNormalization"] == 49
    expected = weights.fold_batch_norm(net, state)
    assert set(folded.graph.initializers) == set(expected)
    for name, value in folded.graph.initializers.items():
        np.testing.assert_array_equal(value.const_value.numpy(), expected[name])
    assert "BatchNormalization" not in {node.op_type for node in folded.graph}


def test_metadata() -> None:
    ir = load_ir("v2_s")
    net = lower(ir)
    meta = build(ir).metadata_props
    assert meta["specdsl.spec"] == "efficientnetv2-s"
    assert meta["specdsl.version"] == specdsl.__version__
    assert meta["specdsl.network_sha256"] == net.sha256() != lower(load_ir("v2_m")).sha256()
    assert (meta["input.layout"], meta["input.resolution"], meta["input.size"]) == ("NCHW", "384", "static")
    assert json.loads(meta["input.mean"]) == json.loads(meta["input.std"]) == [128 / 255] * 3  # (pixel - 128) / 128
    assert (meta["batch_norm"], meta["dtype"]) == ("folded", "float32")
    other = build(ir, dynamic_size=True, keep_bn=True, dtype="float16").metadata_props
    assert (other["input.size"], other["batch_norm"], other["dtype"]) == ("dynamic", "kept", "float16")
    documented = (ROOT / "docs" / "onnx.md").read_text()
    assert all(f"`{key}`" in documented for key in meta)


def test_graph_io_and_opsets() -> None:
    ir = specdsl.loads(TINY_SPEC)
    for opset in (17, 18, 21):
        model = onnx_ir.to_proto(build(ir, opset=opset))
        assert [entry.version for entry in model.opset_import if entry.domain == ""] == [opset]
        onnx.checker.check_model(model, full_check=True)
    model = onnx_ir.to_proto(build(ir, dynamic_size=True))
    (image,) = model.graph.input
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["batch", 3, "height", "width"]
    for opset in (16, 22):
        with pytest.raises(ValueError, match="opsets 17 to 21"):
            build(ir, opset=opset)
    with pytest.raises(ValueError, match="float32 or float16"):
        build(ir, dtype="bfloat16")


def test_an_unknown_op_kind_is_named() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
    class PixelShuffle(_Op):
        op: str = "pixel_shuffle"

    net = lower(specdsl.loads(TINY_SPEC))
    odd = PixelShuffle(name="stem.shuffle", inputs=("input",), out_shape=net.input_shape)
    with pytest.raises(NotImplementedError, match="op kind 'pixel_shuffle'"):
        to_graph(dataclasses.replace(net, ops=[odd, *net.ops]), array_source({}), GraphOptions())


def test_weights_must_fit() -> None:
    ir = specdsl.loads(TINY_SPEC)
    state = weights.initial(ir)
    del state["stem.conv.weight"]
    with pytest.raises(weights.WeightsError, match=r"missing tensor 'stem\.conv\.weight'"):
        build(ir, weights=state)


def test_the_backend_needs_no_torch(tmp_path: Path) -> None:
    """Safetensors weights in, .onnx out, float16 too: no deep-learning framework is imported on the way."""
    code = (
        "import pathlib, sys, specdsl, specdsl.weights\n"
        "from specdsl.backends import load_backend\n"
        "onnx = load_backend('onnx')\n"
        "ir = specdsl.load(sys.argv[1])\n"
        "out = pathlib.Path(sys.argv[2])\n"
        "path = specdsl.weights.save(specdsl.weights.initial(ir), out / 'w.safetensors', ir=ir)\n"
        "onnx.emit(ir, out, weights=path)\n"
        "onnx.build(ir, dtype='float16', dynamic_size=True, keep_bn=True)\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    spec = ROOT / "specs" / "v2_b0.spec"
    command = [sys.executable, "-c", code, str(spec), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
