"""The MBConv family in ONNX: split convs as Slice + Conv + Concat, CondConv as im2col with a dynamic batch, against
the numpy oracle (tests/calibrated.py weights, logits on two calibration images; shipped specs at 96 px)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_ir
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specdsl
from specdsl import reference, weights
from specdsl.api import at_resolution
from specdsl.backends.onnx import OPSETS, build
from specdsl.backends.onnx.tensorrt import problems
from specdsl.passes.lower import CondConv, Slice, lower
from tests.calibrated import calibration_images, images, random_weights, shipped_case
from tests.conftest import run_cli
from tests.strategies import EVERY_FAMILY_FEATURE, family_network, family_spec_text

from .helpers import logits
from .test_onnx_reference import ABSOLUTE, assert_close

FAMILY = ["mixnet_s", "mobilenetv3_large_100", "es", "cc_b0_4e", "lite0"]
RESOLUTION = 96


def assert_within_float32(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within 1e-4 of the oracle, absolute and relative to the largest logit. Deep networks with random weights make
    float32 rounding exceed 1e-5 of the largest logit in every float32 backend (cc_b0_4e at 96 px: the PyTorch backend
    2.6e-5, this one 1.9e-5, of 1.02; a 22-block random family network: 1.0e-5 and 1.3e-5 of 0.35)."""
    error = float(np.abs(actual - expected).max())
    assert error <= ABSOLUTE and error <= ABSOLUTE * np.abs(expected).max(), (error, np.abs(expected).max())


@pytest.mark.parametrize("name", FAMILY)
def test_shipped_family_specs_match_the_oracle(name: str) -> None:
    ir, state, x, expected = shipped_case(name, RESOLUTION)
    assert np.abs(expected[0] - expected[1]).max() > 0.1  # the logits depend on the input
    assert_within_float32(logits(build(ir, weights=state), x), expected)


def test_every_family_feature_matches_the_oracle_in_every_form() -> None:
    ir = specdsl.loads(EVERY_FAMILY_FEATURE, "every.spec")
    net = lower(ir)
    state = random_weights(ir, seed=30)
    x = calibration_images(ir, seed=30)[:2]
    expected = reference.run(net, state, x)
    for options in ({}, {"keep_bn": True}, {"dynamic_size": True}):
        assert_close(logits(build(ir, weights=state, **options), x), expected)
    other = images(2, 47, seed=31)  # --dynamic-size at a size it was not lowered for (odd: other SAME pads)
    dynamic = build(ir, weights=state, dynamic_size=True)
    assert_close(logits(dynamic, other), reference.run(lower(at_resolution(ir, 47)), state, other))
    model = onnx_ir.to_proto(build(ir, weights=state))
    onnx.checker.check_model(model, full_check=True)
    assert problems(model) == []


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network, keep_bn=st.booleans(), dynamic_size=st.booleans(), opset=st.sampled_from(OPSETS))
def test_random_family_networks_match_the_oracle(net: dict, keep_bn: bool, dynamic_size: bool, opset: int) -> None:
    ir = specdsl.loads(family_spec_text(net), "family.spec")
    state = random_weights(ir, seed=40)
    x = calibration_images(ir, seed=40)[:2]
    model = build(ir, weights=state, keep_bn=keep_bn, dynamic_size=dynamic_size, opset=opset)
    assert_within_float32(logits(model, x), reference.run(lower(ir), state, x))


def test_cond_conv_keeps_the_batch_dynamic() -> None:
    """One file for any batch: three samples (one repeated) and one alone each get their own kernels."""
    ir, state, x, expected = shipped_case("cc_b0_4e", RESOLUTION)
    model = build(ir, weights=state)
    (image,) = onnx_ir.to_proto(model).graph.input
    assert image.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert_within_float32(logits(model, np.concatenate([x, x[:1]])), np.concatenate([expected, expected[:1]]))
    assert_within_float32(logits(model, x[1:]), expected[1:])


def test_the_graph_states_the_translation() -> None:
    """CondConv: patches (one-hot Conv, group I) -> MatMul mixing -> Transpose/MatMul/Transpose (groups 1) or Mul and a
    grouped Conv of ones (depthwise), named after the op; a slice is one Slice with constant bounds."""
    ir = specdsl.loads(EVERY_FAMILY_FEATURE, "every.spec")
    net = lower(ir)
    nodes = {node.name: node for node in build(ir).graph}
    cond_convs = [op for op in net.ops if isinstance(op, CondConv)]
    assert {op.depthwise for op in cond_convs} == {True, False}
    for op in cond_convs:
        assert nodes[f"{op.name}.mix"].op_type == "MatMul"
        assert nodes[f"{op.name}.mix"].inputs[0].name == op.inputs[1]  # the routing
        if op.depthwise:
            patches = nodes[f"{op.name}.patches"]
            assert patches.attributes["group"].as_int() == op.in_channels
            assert list(patches.attributes["pads"].as_ints()) == [op.pads[0], op.pads[2], op.pads[1], op.pads[3]]
            assert [nodes[op.name].op_type, nodes[op.name].attributes["group"].as_int()] == ["Conv", op.out_channels]
        else:
            assert f"{op.name}.patches" not in nodes  # 1x1, stride 1: the patches are the input
            assert nodes[op.name].op_type == "Transpose" and nodes[f"{op.name}.matmul"].op_type == "MatMul"
    for op in (op for op in net.ops if isinstance(op, Slice)):
        starts, ends, axes = (value.const_value.numpy().tolist() for value in nodes[op.name].inputs[1:])
        assert (starts, ends, axes) == ([op.start], [op.stop], [1])
    assert Counter(node.op_type for node in nodes.values())["Concat"] == sum(op.op == "concat" for op in net.ops)


def test_canonical_tensors_are_the_initializers(tmp_path: Path) -> None:
    """Weights from a canonical file arrive bit for bit, under their names and shapes (BN kept, so nothing folds)."""
    ir, state, _, _ = shipped_case("cc_b0_4e", RESOLUTION)
    path = weights.save(state, tmp_path / "w.safetensors", ir=ir)
    initializers = build(ir, weights=path, keep_bn=True).graph.initializers
    for name, tensor in state.items():
        assert np.array_equal(initializers[name].const_value.numpy(), tensor), name


def test_float16_cond_conv() -> None:
    ir, state, x, expected = shipped_case("cc_b0_4e", RESOLUTION)
    model = build(ir, weights=state, dtype="float16")
    proto = onnx_ir.to_proto(model)
    onnx.checker.check_model(proto, full_check=True)
    assert problems(proto) == []
    assert np.abs(logits(model, x) - expected).max() <= 0.02 * np.abs(expected).max()


def test_what_the_check_catches_in_reshapes() -> None:
    """Negative control: a Reshape fed a computed shape (Shape of a tensor) is reported."""
    model = onnx_ir.to_proto(build(specdsl.loads(EVERY_FAMILY_FEATURE, "every.spec")))
    reshape = next(node for node in model.graph.node if node.op_type == "Reshape" and node.name.endswith(".kernel"))
    model.graph.node.insert(0, onnx.helper.make_node("Shape", ["input"], ["computed"], name="shape"))
    reshape.input[1] = "computed"
    found = problems(model)
    assert "shape: Shape (pads or shape arithmetic)" in found
    assert f"{reshape.name}: Reshape with computed shape or indices" in found


def test_cli_builds_mixnet_s(tmp_path: Path) -> None:
    result = run_cli("build", "mixnet_s", "--backend", "onnx", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.iterdir()
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert problems(model) == []
    out = logits(path, calibration_images(specdsl.load("mixnet_s"), seed=0)[:2])
    assert out.shape == (2, 1000) and np.isfinite(out).all()
