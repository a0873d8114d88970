"""The preprocessing a model's weights expect, in the saved ``.keras`` file (issue #19): the Keras backend writes it
into the file's ``metadata.json`` (`specdsl.interop.keras_file`), which Keras's loader ignores, so the file still
reloads with ``safe_mode=True`` unchanged, and specdsl reads it back without Keras."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import specdsl  # noqa: E402
from specdsl import weights  # noqa: E402
from specdsl.backends.keras import build, emit  # noqa: E402
from specdsl.interop.keras_file import preprocessing_of  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402


def test_the_keras_file_carries_the_preprocessing_and_reloads_unchanged(tmp_path: Path) -> None:
    ir = specdsl.load("digits_tiny")
    (path,) = emit(ir, tmp_path, seed=3)
    assert [p.name for p in tmp_path.iterdir()] == ["digits_tiny.keras"]  # nothing left beside it
    written = path.read_bytes()
    model = build(ir, seed=3)
    assert preprocessing_of(path) == weights.preprocessing(lower(ir)) == model.preprocessing
    with zipfile.ZipFile(path) as archive:  # Keras's three members, in Keras's order
        assert archive.namelist() == ["metadata.json", "config.json", "model.weights.h5"]

    reloaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(4).random((2, ir.resolution, ir.resolution, ir.in_channels), dtype=np.float32)
    assert np.array_equal(reloaded(x).numpy(), model(x).numpy())
    assert path.read_bytes() == written and preprocessing_of(path)["preprocessing.resolution"] == "32"

    plain = tmp_path / "plain.keras"
    reloaded.save(plain)  # Keras writes its own metadata.json: a re-saved model has lost the entries
    assert preprocessing_of(plain) == {}
