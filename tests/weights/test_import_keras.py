"""`specdsl weights import` of keras.applications weights files: the legacy ``.h5`` and Keras 3's ``.weights.h5``.

The files are written by Keras itself from seeded models with BN statistics calibrated on image-like inputs, read
back with h5py alone, and specdsl's Keras model built from the import gives the source model's logits within
1e-5 of the largest (the network after its preprocessing layers, on the calibration images, where logits are O(1)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from specdsl.backends.keras import build  # noqa: E402
from specdsl.interop.files import import_file, inspect_file  # noqa: E402
from tests.keras.helpers import images, keras_reference, load_ir, logits  # noqa: E402

TOLERANCE = 1e-5
RESOLUTION = 64


def save_legacy_h5(model: keras.Model, path: Path) -> Path:
    """The layout of keras.applications' downloadable ``.h5`` weights (``layer_names``, ``weight_names``)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


@pytest.mark.parametrize("constructor,spec", [("EfficientNetB0", "b0"), ("EfficientNetV2S", "v2_s")])
def test_keras_weights_files_import_with_the_source_logits(tmp_path: Path, constructor: str, spec: str) -> None:
    ir = load_ir(spec, RESOLUTION)
    x = images(4, RESOLUTION, seed=21)
    # Keras numbers layer names per process: models built before (other tests) make these normalization_1, ...
    keras.layers.Normalization(), keras.layers.Rescaling(1.0)
    model, core = keras_reference(constructor, 20, x, input_shape=(RESOLUTION, RESOLUTION, 3))
    expected = logits(core, x[:2])
    scale = np.abs(expected).max()
    assert np.abs(expected[0] - expected[1]).max() > 100 * TOLERANCE * scale  # the input matters
    keras3 = tmp_path / f"{spec}.weights.h5"
    model.save_weights(keras3)
    legacy = save_legacy_h5(model, tmp_path / f"{spec}.h5")
    first, metadata = import_file(ir, keras3)
    assert metadata["source.format"] == "keras"
    second, _ = import_file(ir, legacy)
    assert first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)
    ours = logits(build(ir, weights=first), x[:2])
    assert np.abs(ours - expected).max() <= TOLERANCE * scale
    assert inspect_file(keras3)["fits"] == [spec]
    assert inspect_file(legacy)["fits"] == [spec]


def test_the_keras_model_carries_the_preprocessing_its_weights_expect() -> None:
    """As the ONNX file's metadata_props and the torch model's attribute (`specdsl.weights.preprocessing`)."""
    from specdsl.passes.lower import lower
    from specdsl.weights import preprocessing

    ir = load_ir("b0", RESOLUTION)
    expected = preprocessing(lower(ir))
    assert dict(build(ir).preprocessing) == expected
    assert dict(build(ir, include_top=False, pooling="avg").preprocessing) == expected
    assert expected["preprocessing.resolution"] == str(RESOLUTION)
