"""The MBConv family in Keras: split convs (slice, concat) and CondConv as stock layers, against the numpy oracle.

Weights are framework-free (`tests.calibrated`: random canonical tensors, BN statistics calibrated by the oracle) and
the logits are compared on two of the calibration images, where they are O(1). Shipped specs run at 96 px.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402

import specdsl  # noqa: E402
from specdsl import reference, weights  # noqa: E402
from specdsl.backends.keras import build, layer_name, state_of  # noqa: E402
from specdsl.interop.keras_layout import layout_of, to_keras  # noqa: E402
from specdsl.passes.lower import CondConv, lower  # noqa: E402
from tests.calibrated import calibration_images, random_weights, shipped_case  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.published import PARAMS  # noqa: E402
from tests.strategies import EVERY_FAMILY_FEATURE, family_network, family_spec_text  # noqa: E402

from .conftest import KerasOnTorch  # noqa: E402
from .helpers import SIGNAL, TOLERANCE, logits, max_diff  # noqa: E402

FAMILY = ["mixnet_s", "mobilenetv3_large_100", "es", "cc_b0_4e", "lite0"]
RESOLUTION = 96


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def family() -> dict[str, tuple[specdsl.ModelIR, dict[str, np.ndarray], np.ndarray, np.ndarray, keras.Model]]:
    """Each family spec's case (tests/calibrated.py) with its Keras model, built once for the module."""
    cases = {}
    for name in FAMILY:
        ir, state, x, expected = shipped_case(name, RESOLUTION)
        cases[name] = (ir, state, nhwc(x), expected, build(ir, weights=state))
    return cases


@pytest.mark.parametrize("name", FAMILY)
def test_shipped_family_specs_match_the_oracle(name: str, family) -> None:
    _, _, x, expected, model = family[name]
    assert max_diff(expected[0], expected[1]) > SIGNAL  # the logits depend on the input
    assert max_diff(logits(model, x), expected) <= TOLERANCE
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == PARAMS[name]  # only canonical tensors train


def test_every_family_feature_matches_the_oracle() -> None:
    ir = specdsl.loads(EVERY_FAMILY_FEATURE, "every.spec")
    net = lower(ir)
    assert {"cond_conv", "slice", "concat"} <= {op.op for op in net.ops}
    state = random_weights(ir, seed=30)
    x = calibration_images(ir, seed=30)[:2]
    expected = reference.run(net, state, x)
    assert max_diff(expected[0], expected[1]) > SIGNAL
    assert max_diff(logits(build(ir, weights=state), nhwc(x)), expected) <= TOLERANCE


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_random_family_networks_match_the_oracle(net: dict) -> None:
    ir = specdsl.loads(family_spec_text(net), "family.spec")
    state = random_weights(ir, seed=40)
    x = calibration_images(ir, seed=40)[:2]
    assert max_diff(logits(build(ir, weights=state), nhwc(x)), reference.run(lower(ir), state, x)) <= TOLERANCE


def test_cond_conv_is_one_trainable_layer_and_batches_per_sample(family) -> None:
    """The experts are the EinsumDense named after the op; the helpers hold constants and do not train. Each sample of a
    batch gets its own kernel, whatever the batch: three samples, or one alone."""
    ir, state, x, expected, model = family["cc_b0_4e"]
    for op in (op for op in lower(ir).ops if isinstance(op, CondConv)):
        layer = model.get_layer(layer_name(op.name))
        shape = to_keras(state[f"{op.name}.weight"], layout_of(op, "weight")).shape
        assert isinstance(layer, keras.layers.EinsumDense) and [w.shape for w in layer.trainable_weights] == [shape]
    helpers = [layer for layer in model.layers if layer.name.endswith(("_patches", "_sum"))]
    assert helpers and not any(layer.trainable_weights for layer in helpers)
    batch, expected = np.concatenate([x, x[:1]]), np.concatenate([expected, expected[:1]])
    assert max_diff(logits(model, batch), expected) <= TOLERANCE
    assert max_diff(logits(model, x[1:]), expected[1:2]) <= TOLERANCE


@pytest.mark.parametrize("name", ["cc_b0_4e", "mixnet_s"])
def test_keras_file_reloads_in_safe_mode_and_weights_round_trip(
    name: str, family, keras_on_torch: KerasOnTorch, tmp_path: Path
) -> None:
    """Stock layers only, so the .keras file reloads with safe_mode=True on TF and on Keras-on-PyTorch; the canonical
    tensors come back out of the Keras model bit for bit, through a safetensors file too."""
    ir, state, x, expected, model = family[name]
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert np.array_equal(logits(reloaded, x), logits(model, x))
    assert max_diff(keras_on_torch.logits_of_file(path, x), expected) <= TOLERANCE
    for source in (model, reloaded):
        back = state_of(source)
        assert set(back) == set(state) and all(np.array_equal(back[key], state[key]) for key in state)
    loaded = weights.load(weights.save(reloaded, tmp_path / "w.safetensors", ir=ir), ir)
    assert all(np.array_equal(loaded[key], state[key]) for key in state)


def test_cli_builds_mixnet_s(tmp_path: Path) -> None:
    result = run_cli("build", "mixnet_s", "--backend", "keras", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (path,) = tmp_path.iterdir()
    assert path.name == "mixnet_s.keras"
    model = keras.models.load_model(path, safe_mode=True)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == PARAMS["mixnet_s"]
