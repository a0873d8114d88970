"""TFLite files (`specdsl build --backend keras --export tflite`), run with the LiteRT interpreter (ai-edge-litert):
fp32 equal to the Keras model, int8 valid, small and tracking fp32, int8 input/output, deterministic conversion.

A conversion costs 10 to 30 s here, so the four-network sweep (b0, lite0, mobilenetv3_large_100, v2_b0 at fp32,
float16 and int8) is benchmarks/edge_acceptance.py's; here fp32 runs for b0 and lite0, int8 for lite0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from specdsl.backends.keras import build
from specdsl.backends.keras.tflite import convert, interpreter, run
from specdsl.calibration import Calibration
from tests.calibrated import calibration_images, shipped_case
from tests.conftest import SPECS, listing, one_error_line, run_cli, run_main

NETWORKS = ["b0", "lite0"]
RESOLUTION = 64
#: int8 TFLite logits against the Keras model's on the images calibrated on (random BN-calibrated weights): Pearson
#: correlation above this (docs/edge.md).
CORRELATION = 0.6
TINY = str(SPECS / "digits_tiny.spec")


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[object, np.ndarray]]:
    result = {}
    for name in NETWORKS:
        ir, state, x, _ = shipped_case(name, RESOLUTION)  # x: images BN was calibrated on, logits O(1)
        result[name] = (build(ir, weights=state), calibration_images(ir, 20, 8), x)
    return result


@pytest.mark.parametrize("name", NETWORKS)
def test_fp32_tflite_equals_the_keras_model(name: str, models: dict) -> None:
    model, _, x = models[name]
    expected = np.asarray(model(nhwc(x), training=False))
    assert np.abs(run(convert(model), nhwc(x)) - expected).max() <= 1e-4


def test_int8_tflite_is_integer_small_and_tracks_fp32(models: dict) -> None:
    model, x, _ = models["lite0"]
    calibration = Calibration("test images", x, x, np.zeros(len(x), np.int64))
    fp32, int8 = convert(model), convert(model, quantize="int8", calibration=calibration)
    runner = interpreter(int8)
    runner.allocate_tensors()
    kinds = {detail["dtype"] for detail in runner.get_tensor_details()}
    assert np.int8 in kinds and np.int32 in kinds  # int8 activations and weights, int32 biases
    expected, got = np.asarray(model(nhwc(x), training=False)), run(int8, nhwc(x))
    assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > CORRELATION
    assert len(int8) <= 0.3 * len(fp32)
    assert set(calibration.measured) == {"images", "agreement", "accuracy_fp32", "accuracy_quantized"}


def test_cli_int8_io_float16_and_determinism(tmp_path: Path) -> None:
    args = ("build", TINY, "--backend", "keras", "--export", "tflite", "--calibration", "builtin:digits")
    int8 = [*args, "--quantize", "int8", "--int8-io", "--calibration-images", "20"]
    first, second = run_cli(*int8, "-o", str(tmp_path / "a")), run_cli(*int8, "-o", str(tmp_path / "b"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = (tmp_path / out / "digits_tiny.tflite" for out in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    assert "top-1 agreement" in first.stdout
    runner = interpreter(a.read_bytes())
    assert runner.get_input_details()[0]["dtype"] == np.int8 and runner.get_output_details()[0]["dtype"] == np.int8
    half = run_cli(*args, "--quantize", "float16", "-o", str(tmp_path / "half"))
    assert half.returncode == 0, half.stderr
    assert "top-1 agreement" in half.stdout
    runner = interpreter((tmp_path / "half" / "digits_tiny.tflite").read_bytes())
    assert np.float16 in {detail["dtype"] for detail in runner.get_tensor_details()}  # float16 weights


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--export", "tflite", "--quantize", "int8"], "add --calibration DATA"),
        (["--export", "tflite", "--int8-io"], "--int8-io is for a quantized build"),
        (["--export", "tflite", "--quantize", "float16", "--int8-io"], "--int8-io is for --quantize int8"),
        (["--export", "saved_model", "--quantize", "float16"], "add --export tflite"),
        (["--export", "tflite", "--quantize", "int8", "--calibration", "{empty}"], "no class directories"),
        (
            [
                "--export",
                "tflite",
                "--quantize",
                "int8",
                "--calibration",
                "builtin:digits",
                "--calibration-method",
                "entropy",
            ],
            "--calibration-method is the ONNX backend's",
        ),
    ],
    ids=lambda value: " ".join(value[2:]) if isinstance(value, list) else None,
)
def test_bad_tflite_input_is_one_line_and_writes_nothing(args: list[str], expected: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    before = listing(tmp_path)
    where = {"empty": tmp_path / "empty"}
    arguments = [arg.format(**where) for arg in args]
    code, _, stderr = run_main("build", TINY, "--backend", "keras", *arguments, "-o", str(tmp_path / "out"))
    assert code == 2
    assert expected in one_error_line(stderr)
    assert listing(tmp_path) == before and not (tmp_path / "out").exists()
