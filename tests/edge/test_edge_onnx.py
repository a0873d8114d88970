"""int8 ONNX (`specdsl build --backend onnx --quantize int8 --calibration DATA`): the float-kept rule, valid files
that track fp32, their size, deterministic calibration, and the CLI contract for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from specdsl.backends.onnx import emit
from specdsl.backends.onnx.quantize import quantized_nodes, tensorrt_problems, weight_only_nodes
from specdsl.calibration import Calibration
from specdsl.passes.lower import Activation, Conv, lower
from tests.calibrated import calibration_images, shipped_case
from tests.conftest import SPECS, listing, one_error_line, run_cli, run_main
from tests.onnx.helpers import logits

NETWORKS = ["b0", "lite0", "mobilenetv3_large_100", "v2_b0"]
RESOLUTION = 64
#: int8 logits against fp32 on the images calibrated on (random BN-calibrated weights): Pearson correlation above
#: this. Measured 0.74 (b0) to 0.90 (lite0): a deep random network amplifies rounding (docs/edge.md).
CORRELATION = 0.6
TINY = str(SPECS / "digits_tiny.spec")


def random_calibration(ir: object, seed: int = 20) -> Calibration:
    """The images `shipped_case` calibrated BN on (and more of their kind): calibration and check images at once."""
    x = calibration_images(ir, seed, 8)  # type: ignore[arg-type]
    return Calibration("test images", x, x, np.zeros(len(x), np.int64))


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, np.ndarray]]:
    """Per network: its fp32 and int8 files and the images both were checked on."""
    files = {}
    for name in NETWORKS:
        ir, state, _, _ = shipped_case(name, RESOLUTION)
        calibration = random_calibration(ir)
        (fp32,) = emit(ir, tmp_path_factory.mktemp(f"{name}-fp32"), weights=state)
        (int8,) = emit(
            ir, tmp_path_factory.mktemp(f"{name}-int8"), weights=state, quantize="int8", calibration=calibration
        )
        files[name] = (fp32, int8, calibration.check_images)
    return files


@pytest.mark.parametrize("name", NETWORKS)
def test_int8_files_are_valid_small_and_track_fp32(name: str, int8_files: dict) -> None:
    fp32, int8, x = int8_files[name]
    model = onnx.load(str(int8))
    onnx.checker.check_model(model, full_check=True)
    assert tensorrt_problems(model) == []  # static, no Pad, no shape arithmetic; QDQ's two ops apart
    assert {node.op_type for node in model.graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv"}
    expected, got = logits(fp32, x), logits(int8, x)
    assert np.corrcoef(expected.ravel(), got.ravel())[0, 1] > CORRELATION
    assert int8.stat().st_size <= 0.3 * fp32.stat().st_size
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata["dtype"] == "int8" and float(metadata["quantization.agreement"]) >= 0


@pytest.mark.parametrize("name", ["b0", "lite0"])
def test_the_float_kept_rule(name: str, int8_files: dict) -> None:
    """int8: convs on feature maps, residual adds, relu/relu6, the classifier; float: the SE path and Swish."""
    ir, _, _, _ = shipped_case(name, RESOLUTION)
    net = lower(ir)
    chosen = set(quantized_nodes(net))
    convs = [op for op in net.ops if isinstance(op, Conv)]
    assert {op.name for op in convs if op.in_shape[1] > 1} <= chosen
    assert not chosen & set(weight_only_nodes(net))
    assert all(".se." in name for name in weight_only_nodes(net))
    assert "classifier" in chosen
    smooth = {op.name for op in net.ops if isinstance(op, Activation) and op.function in ("silu", "sigmoid")}
    assert not chosen & smooth
    graph = onnx.load(str(int8_files[name][1])).graph
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.name in smooth:  # a float op reads a float tensor (the conv's dequantized output), writes float
            assert producers[node.input[0]].op_type in ("DequantizeLinear", "Conv", "Mul", "Sigmoid")
        if node.name in chosen and node.op_type == "Conv":
            assert producers[node.input[0]].op_type == "DequantizeLinear"
            assert producers[node.input[1]].op_type == "DequantizeLinear"
        if node.name in weight_only_nodes(net):
            assert producers[node.input[0]].op_type != "DequantizeLinear"  # SE activations stay float
            assert producers[node.input[1]].op_type == "DequantizeLinear"  # its weights are stored int8


def test_cli_builds_are_byte_identical_and_report_agreement(tmp_path: Path) -> None:
    args = ("build", TINY, "--backend", "onnx", "--quantize", "int8", "--calibration", "builtin:digits")
    first = run_cli(*args, "--calibration-images", "40", "-o", str(tmp_path / "a"), "--json")
    second = run_cli(*args, "--calibration-images", "40", "-o", str(tmp_path / "b"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = tmp_path / "a" / "digits_tiny.onnx", tmp_path / "b" / "digits_tiny.onnx"
    assert a.read_bytes() == b.read_bytes()
    import json

    measured = json.loads(first.stdout)["quantization"]
    assert measured["images"] == 360 and 0 <= measured["agreement"] <= 1
    assert set(measured) == {"images", "agreement", "accuracy_fp32", "accuracy_quantized"}
    assert "top-1 agreement" in second.stdout
    metadata = {prop.key: prop.value for prop in onnx.load(str(a)).metadata_props}
    assert float(metadata["quantization.agreement"]) == pytest.approx(measured["agreement"], abs=1e-5)
    assert metadata["quantization.calibration"] == "minmax on 40 images of builtin:digits"


def _bad_folder(root: Path) -> Path:
    """An ImageFolder whose one image is not an image."""
    for split in ("train", "val"):
        (root / split / "cat").mkdir(parents=True)
        (root / split / "cat" / "x.png").write_bytes(b"not a png")
    return root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--backend", "onnx", "--quantize", "int8"], "add --calibration DATA"),
        (["--backend", "onnx", "--quantize", "int8", "--calibration", "{empty}"], "no class directories"),
        (["--backend", "onnx", "--quantize", "int8", "--calibration", "{bad}"], "x.png"),
        (["--backend", "onnx", "--quantize", "int8", "--calibration", "{missing}"], "data directory not found"),
        (["--backend", "onnx", "--quantize", "int8", "--calibration", "builtin:nope"], "unknown built-in"),
        (["--backend", "torch", "--quantize", "int8", "--calibration", "builtin:digits"], "torch backend has no"),
        (["--backend", "onnx", "--quantize", "float16", "--calibration", "builtin:digits"], "quantizes to int8"),
        (["--backend", "onnx", "--calibration", "builtin:digits"], "add --quantize int8"),
        (["--backend", "onnx", "--quantize", "int8", "--calibration", "builtin:digits", "--keep-bn"], "--keep-bn"),
        (["--backend", "onnx", "--quantize", "int8", "--calibration", "builtin:digits", "--int8-io"], "--int8-io"),
        (
            ["--backend", "onnx", "--quantize", "int8", "--calibration", "builtin:digits", "--calibration-images", "0"],
            "--calibration-images 0",
        ),
        (["--backend", "keras", "--quantize", "int8", "--calibration", "builtin:digits"], "add --export tflite"),
        (["--backend", "onnx", "--quantize", "int8", "--calibration", "builtin:digits", "--features"], "backbones"),
    ],
    ids=lambda value: " ".join(value[1:]) if isinstance(value, list) else None,
)
def test_bad_quantization_input_is_one_line_and_writes_nothing(args: list[str], expected: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _bad_folder(tmp_path / "bad")
    (tmp_path / "keep.txt").write_text("mine")
    before = listing(tmp_path)
    where = {"empty": tmp_path / "empty", "bad": tmp_path / "bad", "missing": tmp_path / "missing"}
    code, _, stderr = run_main("build", TINY, *(arg.format(**where) for arg in args), "-o", str(tmp_path / "out"))
    assert code == 2
    assert expected in one_error_line(stderr)
    assert listing(tmp_path) == before and not (tmp_path / "out").exists()


def test_calibration_memory_is_bounded_before_reading(tmp_path: Path) -> None:
    args = (
        "--backend",
        "onnx",
        "--quantize",
        "int8",
        "--calibration",
        "builtin:digits",
        "--calibration-images",
        "9999",
    )
    code, _, stderr = run_main("build", "b0", *args, "-o", str(tmp_path / "out"))
    line = one_error_line(stderr)
    assert code == 2 and "take 5.6 GiB (limit 1 GiB): give at most 1783" in line and "--calibration-images 9999" in line
    assert list(tmp_path.iterdir()) == []
