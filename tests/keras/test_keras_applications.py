"""Weights imported from keras.applications into specdsl's Keras model give the same logits (within 1e-4).

References are built with ``weights=None`` from a fixed seed, with random BN affine parameters,
SE biases and BN statistics calibrated on image-like inputs, so logits are O(1) and depend on the
input. Preprocessing is matched, not dropped: both models take 0-255 pixels, specdsl's with
``include_preprocessing=True`` (the spec's normalisation), keras.applications' with its own
Rescaling/Normalization layers. Inputs are reduced resolutions (the spec re-resolved at the same
size: same weights, smaller feature maps) to keep CI time down; the sizes are chosen so that
stride-2 convs see even and odd inputs, where TF SAME padding is asymmetric or not.
"""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402

from specdsl.backends.keras import build, layer_name  # noqa: E402
from specdsl.interop import keras_applications  # noqa: E402
from specdsl.ir import ModelIR, Normalization  # noqa: E402
from specdsl.passes.lower import DropPath, lower  # noqa: E402

from .helpers import CALIBRATION_BATCH, SIGNAL, TOLERANCE, images, keras_reference, load_ir, logits, max_diff  # noqa: E402


def to_pixels(x: np.ndarray, norm: Normalization) -> np.ndarray:
    """The 0-255 images that a network with normalisation ``norm`` sees as ``x``."""
    return ((x * np.asarray(norm.std) + np.asarray(norm.mean)) * 255.0).astype(np.float32)


def reference(constructor: str, ir: ModelIR, seed: int) -> tuple[keras.Model, np.ndarray]:
    """The keras.applications model with its preprocessing matched to the spec's, and two 0-255 inputs.

    EfficientNet (V1) built with ``weights=None`` leaves its Normalization unadapted (mean 0,
    variance 1); it gets the spec's statistics here, as its ImageNet weights would have them.
    """
    calibration = images(CALIBRATION_BATCH, ir.resolution, seed + 1)
    options = {"include_preprocessing": True} if "V2" in constructor else {}
    size = (ir.resolution, ir.resolution, ir.in_channels)
    model, _ = keras_reference(constructor, seed, calibration, input_shape=size, **options)
    if "V2" not in constructor:
        norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
        norm.adapt_mean.assign(np.asarray(ir.normalization.mean, np.float32))
        norm.adapt_variance.assign(np.square(np.asarray(ir.normalization.std, np.float32)))
        norm.finalize_state()
    # Calibration images: their logits are O(1) (4 images' statistics do not generalise to unseen ones).
    return model, to_pixels(calibration[:2], ir.normalization)


CASES = [
    ("EfficientNetB0", "b0", 224),
    ("EfficientNetB3", "b3", 180),
    pytest.param("EfficientNetB5", "b5", 132, marks=pytest.mark.slow),
    ("EfficientNetV2B0", "v2_b0", 224),
    ("EfficientNetV2B2", "v2_b2", 164),
    ("EfficientNetV2S", "v2_s", 160),
    pytest.param("EfficientNetV2M", "v2_m", 128, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("constructor,spec,resolution", CASES)
def test_matches_keras_applications(constructor: str, spec: str, resolution: int) -> None:
    ir = load_ir(spec, resolution)
    ref, x = reference(constructor, ir, seed=80)
    expected = logits(ref, x)
    assert max_diff(expected[0], expected[1]) > SIGNAL  # the logits depend on the input
    state = keras_applications.import_weights(ref, ir)
    ours = build(ir, weights=state, include_preprocessing=True)
    assert max_diff(logits(ours, x), expected) <= TOLERANCE
    if spec in ("b0", "v2_b0"):  # negative control: the tolerance catches a real difference (padding rule)
        symmetric = ir.model_copy(update={"padding": "symmetric"})
        assert max_diff(logits(build(symmetric, weights=state, include_preprocessing=True), x), expected) > SIGNAL


def test_drop_path_rates_are_the_lowerings_not_keras_applications_v2s() -> None:
    """keras.applications EfficientNetV2 spreads drop-path rates over the unscaled block count (training only).

    V2-B2 (depth 1.2) has 28 blocks where the unscaled config has 21: Keras's last block drops with
    0.2 * 27 / 21 = 0.26. specdsl's Keras model uses the lowering's rates, drop_path * i / N over the
    scaled blocks (0.2 * 27 / 28 = 0.19 for the last).
    """
    ir = load_ir("v2_b2", 64)
    net = lower(ir)
    ours = build(ir)
    rates = {op.name: op.rate for op in net.ops if isinstance(op, DropPath)}
    assert {name: ours.get_layer(layer_name(name)).rate for name in rates} == rates
    assert max(rates.values()) < ir.spec.defaults.drop_path
    keras.utils.set_random_seed(0)
    ref = keras.applications.EfficientNetV2B2(weights=None, input_shape=(64, 64, 3), include_preprocessing=False)
    theirs = [layer.rate for layer in ref.layers if layer.name.endswith("_drop")]
    assert len(theirs) == len(rates)
    assert max(theirs) == pytest.approx(0.2 * 27 / 21) and max(rates.values()) == pytest.approx(0.2 * 27 / 28)
    assert sorted(theirs) != sorted(rates.values())
