"""ONNX backbones (issue #20): one graph output per tap, named by it, with its shape; checker, strict shape inference
and the TensorRT-readiness check pass; onnxruntime's taps equal the oracle's and torch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

onnx = pytest.importorskip("onnx")
onnx_ir = pytest.importorskip("onnx_ir")
pytest.importorskip("onnxruntime")

import specdsl  # noqa: E402
from specdsl import reference  # noqa: E402
from specdsl.backends.onnx.emitter import GraphOptions  # noqa: E402
from specdsl.backends.onnx.model import to_model  # noqa: E402
from specdsl.backends.onnx.runtime import session  # noqa: E402
from specdsl.backends.onnx.tensorrt import problems  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.calibrated import calibration_images, random_weights  # noqa: E402
from tests.onnx.helpers import ExternalZeros  # noqa: E402
from tests.strategies import family_network, family_spec_text  # noqa: E402

from .helpers import (  # noqa: E402
    OTHER,
    REPRESENTATIVE,
    TOLERANCE,
    at_another_size,
    oracle_taps,
    relative_error,
    shipped,
)

SPECS = sorted(path.stem for path in (Path(__file__).resolve().parents[2] / "specs").glob("*.spec"))


def run(model: onnx_ir.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    ort = session(model, threads=1)
    names = [output.name for output in ort.get_outputs()]
    return dict(zip(names, ort.run(None, {"input": np.asarray(x, np.float32)}), strict=True))


@pytest.mark.parametrize("name", SPECS)
def test_every_shipped_backbone_is_valid_and_ready_for_tensorrt(name: str, tmp_path: Path) -> None:
    """Structure only (zero weights held in a sparse external file): every shipped spec, strides taps."""
    net = lower(specdsl.load(name), features="strides")
    source = ExternalZeros(f"{name}.onnx.data")
    model = to_model(net, source, GraphOptions())
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(onnx_ir.to_proto(model).SerializeToString())
    source.write(tmp_path)
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    outputs = [
        (o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in inferred.graph.output
    ]
    assert outputs == [(tap.name, ["batch", *tap.shape]) for tap in net.taps]
    assert problems(proto) == []
    assert not any(node.name.startswith(("head", "classifier")) for node in proto.graph.node)  # no head


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_onnxruntime_taps_equal_the_oracle_and_torch(name: str) -> None:
    torch = pytest.importorskip("torch")
    ir, state = shipped(name)
    for features in ("strides", "expansion"):
        x, expected = oracle_taps(name, features)
        model = specdsl.build(ir, backend="onnx", weights=state, features=features)
        got = run(model, x)
        taps = lower(ir, features=features).taps
        assert list(got) == [tap.name for tap in taps]
        for value, e in zip(got.values(), expected, strict=True):
            assert relative_error(value, e) <= TOLERANCE
        with torch.no_grad():
            maps = specdsl.build(ir, weights=state, features=features).eval()(torch.as_tensor(x))
        for value, m in zip(got.values(), maps, strict=True):
            assert relative_error(value, m.double().numpy()) <= TOLERANCE


@pytest.mark.parametrize("name", ["b0", "mixnet_s"])
def test_dynamic_size_backbone_equals_the_oracle_at_another_resolution(name: str) -> None:
    ir = shipped(name)[0]
    state = shipped(name, OTHER)[1]  # calibrated at OTHER: activations O(1) there
    model = specdsl.build(ir, backend="onnx", weights=state, features="strides", dynamic_size=True)
    proto = onnx_ir.to_proto(model)
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    x, expected = oracle_taps(name, "strides", OTHER)
    got = run(model, x)
    for value, e in zip(got.values(), expected, strict=True):
        assert value.shape == e.shape and relative_error(value, e) <= TOLERANCE


def test_backbone_metadata_lists_the_taps_and_a_classifier_has_none() -> None:
    ir = shipped("b0")[0]
    backbone = specdsl.build(ir, backend="onnx", features="strides", out_indices=[2, 3, 4])
    assert '"reduction": 8' in backbone.metadata_props["outputs"]
    assert "outputs" not in specdsl.build(ir, backend="onnx").metadata_props


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_onnxruntime_taps_equal_the_oracle_on_random_family_networks(net: dict) -> None:
    ir = specdsl.loads(family_spec_text(net), "family.spec")
    state = random_weights(ir, 11)
    x = calibration_images(ir, 11)[:2]
    for features in ("strides", "expansion"):
        expected = reference.run(lower(ir, features=features), state, x)
        got = run(specdsl.build(ir, backend="onnx", weights=state, features=features), x)
        for value, e in zip(got.values(), expected, strict=True):
            assert relative_error(value, e) <= TOLERANCE
    x, expected = at_another_size(ir, state, 11)
    got = run(specdsl.build(ir, backend="onnx", weights=state, features="strides", dynamic_size=True), x)
    for value, e in zip(got.values(), expected, strict=True):
        assert relative_error(value, e) <= TOLERANCE
