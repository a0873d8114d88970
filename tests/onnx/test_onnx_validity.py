"""Every shipped spec emits a valid ONNX model (checker with full_check, strict shape inference) that is ready
for TensorRT: no Pad, no shape arithmetic, static shapes apart from the batch, every op in the allowlist.

Specs up to 50M parameters are built with their full (seeded) weights; b7, b8, l2, v2_m, v2_l and v2_xl
structure-only: the same graph with zero weights in a sparse external file (tests/onnx/helpers.py).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir
import pytest

import specdsl
from specdsl.backends.onnx import build
from specdsl.backends.onnx.graph import GraphOptions
from specdsl.backends.onnx.tensorrt import ALLOWLIST, problems
from tests.conftest import ROOT, SPECS

from .helpers import load_ir, structure_only

SPEC_NAMES = sorted(path.stem for path in SPECS.glob("*.spec"))
WITH_WEIGHTS = 50_000_000  # parameters; larger specs are checked structure-only


def shipped_model(name: str, directory: Path) -> onnx.ModelProto:
    """The default (static, float32, BN folded) model of a shipped spec, checked by onnx.checker with full_check."""
    ir = load_ir(name)
    if specdsl.analyze(ir).params <= WITH_WEIGHTS:
        model = onnx_ir.to_proto(build(ir, seed=0))
        onnx.checker.check_model(model, full_check=True)
        return model
    path = structure_only(ir, directory)
    onnx.checker.check_model(str(path), full_check=True)
    return onnx.load(str(path), load_external_data=False)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_shipped_spec_is_valid_and_ready_for_tensorrt(name: str, tmp_path: Path) -> None:
    model = shipped_model(name, tmp_path)
    ir = load_ir(name)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    (output,) = inferred.graph.output
    assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["batch", ir.head.classes]
    assert len(inferred.graph.value_info) >= len(model.graph.node) - 1  # every intermediate value has a shape
    assert problems(model) == []
    op_types = {node.op_type for node in model.graph.node}
    assert not op_types & {"Pad", "Shape", "Gather"}  # Reshape and Slice only with constant operands (problems)
    assert op_types <= ALLOWLIST


@pytest.mark.parametrize("options", [GraphOptions(keep_bn=True), GraphOptions(opset=17), GraphOptions(opset=20)])
def test_variants_are_ready_for_tensorrt(options: GraphOptions, tmp_path: Path) -> None:
    path = structure_only(load_ir("v2_s"), tmp_path, options)
    onnx.checker.check_model(str(path), full_check=True)
    assert problems(onnx.load(str(path), load_external_data=False)) == []


def test_float16_is_valid_and_ready_for_tensorrt() -> None:
    model = onnx_ir.to_proto(build(load_ir("b0"), dtype="float16"))
    onnx.checker.check_model(model, full_check=True)
    assert problems(model) == []
    casts = [node for node in model.graph.node if node.op_type == "Cast"]
    assert len(casts) == 2  # float32 in, float32 out (keep_io_types)
    floats = {init.data_type for init in model.graph.initializer}
    assert floats == {onnx.TensorProto.FLOAT16}


def test_what_the_check_catches() -> None:
    """Negative controls: dynamic spatial size, a newer opset and a Pad node are each reported."""
    ir = load_ir("b0")
    dynamic = onnx_ir.to_proto(build(ir, dynamic_size=True))
    assert any("dynamic dimensions" in problem for problem in problems(dynamic))
    assert any("opset 21" in problem for problem in problems(onnx_ir.to_proto(build(ir, opset=21))))
    padded = onnx_ir.to_proto(build(ir))
    stem = padded.graph.node[0]
    pads = onnx.helper.make_tensor("pads", onnx.TensorProto.INT64, [8], [0, 0, 0, 0, 0, 0, 1, 1])
    padded.graph.initializer.append(pads)
    padded.graph.node.insert(0, onnx.helper.make_node("Pad", ["input", "pads"], ["padded"], name="pad"))
    stem.input[0] = "padded"
    assert any(problem.startswith("pad: Pad") for problem in problems(padded))


def test_the_allowlist_is_documented() -> None:
    doc = (ROOT / "docs" / "onnx.md").read_text()
    section = doc.split("## TensorRT", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{op}`" in section for op in ALLOWLIST)
