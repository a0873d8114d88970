"""Keras backbones (issue #20): one named output per tap equal to the oracle's, at the spec's and another resolution;
include_top=False / pooling as keras.applications; a saved backbone reloads in safe mode with the same taps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

keras = pytest.importorskip("keras")

import specdsl  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.calibrated import calibration_images, random_weights  # noqa: E402
from tests.strategies import family_network, family_spec_text  # noqa: E402

from .helpers import OTHER, TOLERANCE, at_another_size, oracle_taps, relative_error, shipped  # noqa: E402


def keras_taps(model: keras.Model, x: np.ndarray) -> dict[str, np.ndarray]:
    out = model(np.transpose(x, (0, 2, 3, 1)).astype(np.float32), training=False)
    return {name: np.transpose(keras.ops.convert_to_numpy(value), (0, 3, 1, 2)) for name, value in out.items()}


@pytest.mark.parametrize("name", ["b0", "mixnet_s"])
def test_keras_taps_equal_the_oracle_at_the_specs_and_another_resolution(name: str) -> None:
    ir = shipped(name)[0]
    for size in (ir.resolution, OTHER):
        state = shipped(name, size)[1]
        model = specdsl.build(ir, backend="keras", weights=state, features="strides", resolution=size)
        x, expected = oracle_taps(name, "strides", size)
        got = keras_taps(model, x)
        assert list(got) == [tap.name for tap in lower(ir, features="strides").taps]
        for value, e in zip(got.values(), expected, strict=True):
            assert value.shape == e.shape and relative_error(value, e) <= TOLERANCE
    assert not any(layer.name.startswith(("classifier", "head")) for layer in model.layers)


def test_a_saved_backbone_reloads_in_safe_mode_with_the_same_taps(tmp_path: Path) -> None:
    ir, state = shipped("b0")
    model = specdsl.build(ir, backend="keras", weights=state, features="expansion", out_indices=[1, 3])
    path = tmp_path / "backbone.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    x, expected = oracle_taps("b0", "expansion")
    got, again = keras_taps(model, x), keras_taps(reloaded, x)
    assert list(again) == list(got) == [t.name for t in lower(ir, features="expansion", out_indices=[1, 3]).taps]
    for name, value in got.items():
        assert np.array_equal(value, again[name])
    for value, e in zip(got.values(), [expected[1], expected[3]], strict=True):
        assert relative_error(value, e) <= TOLERANCE


@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_include_top_false_is_the_final_feature_map_with_keras_applications_pooling(pooling: str | None) -> None:
    ir, state = shipped("b0")
    model = specdsl.build(ir, backend="keras", weights=state, include_top=False, pooling=pooling)
    net = lower(ir)
    x, _ = oracle_taps("b0")
    features = specdsl.reference.run(net, state, x, until=net.features)  # (N, 1280, 2, 2)
    expected = {None: np.transpose(features, (0, 2, 3, 1)), "avg": features.mean((2, 3)), "max": features.max((2, 3))}
    got = keras.ops.convert_to_numpy(model(np.transpose(x, (0, 2, 3, 1)).astype(np.float32), training=False))
    assert relative_error(got, expected[pooling]) <= TOLERANCE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pooling": "avg"}, "give include_top=False too"),
        ({"include_top": False, "pooling": "sum"}, "pooling must be None, 'avg' or 'max'"),
        ({"include_top": False, "features": "strides"}, "give one"),
    ],
)
def test_contradictory_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        specdsl.build(shipped("b0")[0], backend="keras", **options)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_keras_taps_equal_the_oracle_on_random_family_networks(net: dict) -> None:
    ir = specdsl.loads(family_spec_text(net), "family.spec")
    state = random_weights(ir, 12)
    x = calibration_images(ir, 12)[:2]
    expected = specdsl.reference.run(lower(ir, features="expansion"), state, x)
    got = keras_taps(specdsl.build(ir, backend="keras", weights=state, features="expansion"), x)
    for value, e in zip(got.values(), expected, strict=True):
        assert relative_error(value, e) <= TOLERANCE
    x, expected = at_another_size(ir, state, 12)
    model = specdsl.build(ir, backend="keras", weights=state, features="strides", resolution=ir.resolution + 11)
    for value, e in zip(keras_taps(model, x).values(), expected, strict=True):
        assert relative_error(value, e) <= TOLERANCE
