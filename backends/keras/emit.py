"""Write a Keras model: ``<name>.keras`` and, with ``export="saved_model"``, a TensorFlow SavedModel directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from specdsl.backends import BACKENDS, BackendUnavailable
from specdsl.calibration import Calibration
from specdsl.interop import keras_file
from specdsl.ir import ModelIR

from ..naming import file_stem
from .model import Weights, build

EXPORTS = tuple(BACKENDS["keras"].exports)


def emit(
    ir: ModelIR,
    out_dir: str | Path,
    *,
    weights: Weights = None,
    seed: int = 0,
    export: str | None = None,
    include_preprocessing: bool = False,
    quantize: str | None = None,
    calibration: Calibration | None = None,
    int8_io: bool = False,
    features: Any = None,
    out_indices: Any = None,
) -> list[Path]:
    """Write ``<name>.keras`` into ``out_dir`` (and ``<name>_saved_model/`` for TF Serving with export='saved_model').

    The ``.keras`` file holds only stock Keras layers: ``keras.models.load_model(path, safe_mode=True)`` reads it on
    any Keras backend without specdsl. The SavedModel needs Keras's TensorFlow backend.

    ``export="tflite"``: also ``<name>.tflite`` converted from this model (`tflite.convert`: ``quantize``
    float16 or int8 with ``calibration``, ``int8_io``; docs/edge.md).
    """
    from .tflite import check_quantize

    check_quantize(calibrated=calibration is not None, quantize=quantize, int8_io=int8_io, export=export)
    if export is not None and export not in EXPORTS:
        raise ValueError(f"the Keras backend exports {', '.join(EXPORTS)}, not {export!r}")
    if export in EXPORTS and keras.backend.backend() != "tensorflow":
        raise BackendUnavailable(
            f"a SavedModel or TFLite file needs Keras's TensorFlow backend, not {keras.backend.backend()!r}"
        )
    out_dir = Path(out_dir)
    stem = file_stem(ir.name)
    backbone = {} if features is None else {"features": features, "out_indices": out_indices}  # docs/features.md
    model = build(ir, weights=weights, seed=seed, include_preprocessing=include_preprocessing, **backbone)
    path = out_dir / f"{stem}.keras"
    save(model, path)
    paths = [path]
    if export == "saved_model":
        saved = out_dir / f"{stem}_saved_model"
        model.export(saved, format="tf_saved_model", verbose=False)
        paths.append(saved)
    if export == "tflite":
        from .tflite import convert

        tflite = out_dir / f"{stem}.tflite"
        tflite.write_bytes(convert(model, quantize=quantize, calibration=calibration, int8_io=int8_io))
        paths.append(tflite)
    return paths


def save(model: keras.Model, path: Path) -> None:
    """``model.save(path)`` with the preprocessing its weights expect in the file's ``metadata.json``, which a
    functional model's config cannot hold (`specdsl.interop.keras_file`: read back without Keras)."""
    saved = path.with_name(f".{path.stem}.unlabelled.keras")
    try:
        model.save(saved)
        keras_file.label(saved, path, model.preprocessing)
    finally:
        saved.unlink(missing_ok=True)
