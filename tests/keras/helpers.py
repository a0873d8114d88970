"""Shared helpers for tests that run Keras models: image-like inputs, BN statistics that matter, keras.applications.

Numpy and Keras only (no torch), so the Keras backend's own tests need nothing else; the PyTorch
backend's keras.applications comparison uses `keras_reference` too.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import specdsl
from specdsl.api import at_resolution
from specdsl.ir import ModelIR
from tests import calibrated
from tests.conftest import SPECS

TOLERANCE = 1e-4  # max |logit difference| the issue asks for (float32 frameworks)
SIGNAL = 100 * TOLERANCE  # a difference that matters is at least this large
CALIBRATION_BATCH = 4


def load_ir(name: str, resolution: int | None = None) -> ModelIR:
    """specs/<name>.spec, re-resolved at ``resolution`` where given."""
    return at_resolution(specdsl.load(SPECS / f"{name}.spec"), resolution)


def images(count: int, size: int, seed: int, channels: int = 3) -> np.ndarray:
    """`tests.calibrated.images` (smooth random structure plus noise) in Keras's NHWC layout."""
    return calibrated.images(count, size, seed, channels).transpose(0, 2, 3, 1).copy()


def pixels(x: np.ndarray) -> np.ndarray:
    """Image-like inputs on the 0-255 scale (for models that normalise inside)."""
    return (127.5 + 60.0 * x).astype(np.float32)


def calibrate(model: keras.Model, seed: int, x: np.ndarray | None, *, core: keras.Model | None = None) -> None:
    """Random BN affine parameters (and conv biases) from ``seed``, then BN statistics set to the batch statistics
    of ``x`` (one training pass of ``core``, default the whole model, at momentum 0).

    Random weights with default statistics decay the signal within a few blocks; calibrated
    statistics keep activations normalised, so logits are O(1) and depend on the input.
    """
    rng = np.random.default_rng(seed)
    norms = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.2, shape).astype("float32"))
            norms.append((layer, layer.momentum))
            layer.momentum = 0.0
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0.0, 0.1, layer.bias.shape).astype("float32"))
    if x is not None:
        (core or model)(x, training=True)
    for layer, momentum in norms:
        layer.momentum = momentum


def keras_reference(
    constructor: str, seed: int, calibration: np.ndarray | None, **options: object
) -> tuple[keras.Model, keras.Model]:
    """A seeded keras.applications model (logits, ``weights=None``) and its core: the network without preprocessing.

    BN statistics are calibrated on ``calibration``, given as the core's input. EfficientNetV2 is
    built without preprocessing unless ``include_preprocessing=True`` is passed; EfficientNet (V1)
    always has Rescaling and Normalization inside, so its core starts at the stem.
    """
    keras.utils.set_random_seed(seed)
    if "V2" in constructor:
        options.setdefault("include_preprocessing", False)
    model = getattr(keras.applications, constructor)(weights=None, classifier_activation=None, **options)
    core = model
    if "V2" not in constructor or options["include_preprocessing"]:
        core = keras.Model(model.get_layer("stem_conv" if "V2" in constructor else "stem_conv_pad").input, model.output)
    calibrate(model, seed, calibration, core=core)
    return model, core


def logits(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Inference-mode outputs as float64 numpy."""
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float64)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
