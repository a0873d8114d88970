"""TFLite files from the Keras translation: ``specdsl build --backend keras --export tflite`` (docs/edge.md).

The ``.tflite`` file is converted from the very Keras model the backend builds (through a SavedModel, which
freezes its variables), never derived a second time from the IR. Three forms:

* float32 (default): equal to the Keras model within float32 rounding (tests/edge checks 1e-4);
* ``quantize="float16"``: float16 weights (the converter's float16 quantization; kernels dequantize them);
* ``quantize="int8"``: full-integer (``TFLITE_BUILTINS_INT8``: every op int8, weights per-channel), calibrated
  on ``calibration.images``; input and output stay float32 unless ``int8_io`` (int8 tensors, as the EdgeTPU
  compiler requires: quantize the input with the input tensor's scale and zero point, dequantize the output
  with the output's).

With ``calibration``, the file is run on its check images (`interpreter`) beside the Keras model, and the
top-1 agreement and accuracies go into ``calibration.measured``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from specdsl.calibration import Calibration, compare, in_batches

QUANTIZE = ("float16", "int8")


def check_quantize(*, calibrated: bool, method: str | None = None, **options: Any) -> None:
    """Refuse what the TFLite export cannot do, before any work (``options``: the build's)."""
    quantize = options.get("quantize")
    if options.get("int8_io") and quantize != "int8":
        raise ValueError("--int8-io is for --quantize int8")
    if quantize is None:
        if calibrated:
            raise ValueError("calibration data is for --quantize int8 or float16")
        return
    if options.get("export") != "tflite":
        raise ValueError("the Keras backend quantizes its TFLite file: add --export tflite")
    if quantize not in QUANTIZE:
        raise ValueError(f"TFLite files are quantized to {' or '.join(QUANTIZE)}, not {quantize}")
    if quantize == "int8" and not calibrated:
        raise ValueError("int8 needs calibration images: add --calibration DATA (an ImageFolder or builtin:digits)")
    if method is not None:
        raise ValueError("--calibration-method is the ONNX backend's; TFLite calibrates on min/max")


def interpreter(content: bytes, threads: int = 1) -> Any:
    """A TFLite interpreter for ``content``: the maintained LiteRT package (``ai-edge-litert``) when installed,
    else TensorFlow's own (deprecated there, the same runtime)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - the [edge] extra installs ai-edge-litert
        from tensorflow.lite import Interpreter
    return Interpreter(model_content=content, num_threads=threads)


def run(content: bytes | Any, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """Logits of a ``.tflite`` file's content (or an `interpreter`) for NHWC float32 ``images``, batch resized to
    fit; int8 input and output are quantized and dequantized with the tensors' own parameters."""
    runner = interpreter(content, threads) if isinstance(content, bytes) else content
    source, target = runner.get_input_details()[0], runner.get_output_details()[0]
    if tuple(source["shape"]) != images.shape:
        runner.resize_tensor_input(source["index"], list(images.shape))
    runner.allocate_tensors()
    if source["dtype"] == np.int8:
        scale, zero = source["quantization"]
        images = np.clip(np.rint(images / scale + zero), -128, 127).astype(np.int8)
    runner.set_tensor(source["index"], images)
    runner.invoke()
    out = runner.get_tensor(target["index"])
    if target["dtype"] == np.int8:
        scale, zero = target["quantization"]
        out = (out.astype(np.float32) - zero) * scale
    return out


def convert(
    model: Any, *, quantize: str | None = None, calibration: Calibration | None = None, int8_io: bool = False
) -> bytes:
    """The ``.tflite`` content of a Keras ``model`` (NHWC); see the module docstring for the options."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="specdsl-tflite-") as scratch:
        saved = Path(scratch, "saved_model")
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            assert calibration is not None  # check_quantize
            images = calibration.images.transpose(0, 2, 3, 1)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = converter.inference_output_type = tf.int8
        content = converter.convert()
    if calibration is not None:
        measure(model, content, calibration)
    return content


def measure(model: Any, content: bytes, calibration: Calibration) -> None:
    """The Keras model and the ``.tflite`` file on the check images: agreement and accuracies."""
    import keras

    images = calibration.check_images.transpose(0, 2, 3, 1)
    runner = interpreter(content)
    reference = in_batches(lambda x: keras.ops.convert_to_numpy(model(x, training=False)), images)
    converted = in_batches(lambda x: run(runner, x), images)
    calibration.measured.update(compare(reference, converted, calibration.check_labels))
