"""Acceptance run for edge deployment (docs/edge.md): trained weights keep their accuracy in int8 and float16,
and every network family gives valid, small files that track fp32.

1. Trained weights: specs/digits_tiny.spec trained on builtin:digits by the trainer (``--threads 1``), then
   ``specdsl build`` writes ONNX fp32 and int8 and TFLite fp32, float16 and int8 from best.safetensors
   (calibrated on builtin:digits' train split); each file is read back and evaluated on the 360 held-out
   images (`specdsl.training.evaluate`). Goals: int8 ONNX and int8 TFLite within 1 point of fp32 and top-1
   agreement >= 98%; float16 TFLite within 0.2 points.
2. BN-calibrated random weights (tests/calibrated.py) for b0, lite0, mobilenetv3_large_100 and v2_b0 at 64 px:
   int8 ONNX (checker, TensorRT checks with QDQ allowed) and TFLite fp32, float16 and int8 (run in LiteRT):
   fp32 TFLite within 1e-4 of Keras, int8 logit correlation with fp32 above the tests' bound (0.6), int8
   files <= 0.3x fp32.

Writes benchmarks/results_edge_acceptance.md.

    python benchmarks/edge_acceptance.py [--run-dir DIR]   # DIR: reuse a finished digits run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from edge import write_report  # this folder is sys.path[0] when run as a script
from frontend import cpu_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import specdsl  # noqa: E402
from specdsl.training.data import open_source  # noqa: E402
from specdsl.training.evaluate import evaluate, file_predictor, held_out  # noqa: E402

SPEC = ROOT / "specs" / "digits_tiny.spec"
NETWORKS = ["b0", "lite0", "mobilenetv3_large_100", "v2_b0"]
CORRELATION = 0.6
LOAD_AT_START = os.getloadavg()[0]


def specdsl_build(*args: str) -> dict:
    command = [sys.executable, "-m", "specdsl", "build", str(SPEC), *args, "--force", "--json"]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def tflite_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from specdsl.backends.keras.tflite import interpreter, run

    runner = interpreter(path.read_bytes())
    return lambda images: run(runner, np.ascontiguousarray(images.transpose(0, 2, 3, 1)))


def trained(run_dir: Path, out: Path) -> list[str]:
    weights = str(run_dir / "best.safetensors")
    data = ["--calibration", "builtin:digits"]
    built = {
        "ONNX fp32": specdsl_build("--backend", "onnx", "--weights", weights, "-o", str(out / "onnx")),
        "ONNX int8": specdsl_build(
            "--backend", "onnx", "--weights", weights, "-o", str(out / "onnx-int8"), "--quantize", "int8", *data
        ),
        "TFLite fp32": specdsl_build(
            "--backend", "keras", "--export", "tflite", "--weights", weights, "-o", str(out / "tflite")
        ),
        "TFLite float16": specdsl_build(
            "--backend", "keras", "--export", "tflite", "--weights", weights, "-o", str(out / "tflite-f16"),
            "--quantize", "float16", *data,
        ),
        "TFLite int8": specdsl_build(
            "--backend", "keras", "--export", "tflite", "--weights", weights, "-o", str(out / "tflite-int8"),
            "--quantize", "int8", *data,
        ),
        "TFLite int8, int8 I/O": specdsl_build(
            "--backend", "keras", "--export", "tflite", "--weights", weights, "-o", str(out / "tflite-int8io"),
            "--quantize", "int8", "--int8-io", *data,
        ),
    }  # fmt: skip
    ir = specdsl.load(SPEC)
    batches = list(held_out(ir, open_source("builtin:digits", ir.in_channels)))
    results = {}
    for label, report in built.items():
        path = Path(report["written"][-1])
        predict = tflite_predictor(path) if path.suffix == ".tflite" else file_predictor(path)
        results[label] = (evaluate(predict, batches), path.stat().st_size)
    lines = [
        "## Trained weights: digits_tiny on builtin:digits",
        "",
        "| file | held-out accuracy | vs fp32 (points) | top-1 agreement with fp32 | size KB | goal met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, (result, size) in results.items():
        base = results["ONNX fp32" if label.startswith("ONNX") else "TFLite fp32"][0]
        delta = 100 * (result.accuracy - base.accuracy)
        agreement = float((result.predictions == base.predictions).mean())
        limit = 0.2 if "float16" in label else 1.0
        met = "" if "fp32" in label else ("yes" if abs(delta) <= limit and agreement >= 0.98 else "**no**")
        lines.append(f"| {label} | {result.accuracy:.2%} | {delta:+.2f} | {agreement:.2%} | {size / 1e3:.0f} | {met} |")
    return lines


def families() -> list[str]:
    import onnx

    from specdsl.backends.keras import build as keras_build
    from specdsl.backends.keras.tflite import convert, run
    from specdsl.backends.onnx import emit, session
    from specdsl.backends.onnx.quantize import tensorrt_problems
    from specdsl.calibration import Calibration
    from tests.calibrated import calibration_images, shipped_case

    lines = [
        "## BN-calibrated random weights at 64 px",
        "",
        "| network | ONNX int8 checks | ONNX int8 corr | ONNX int8 / fp32 size | TFLite fp32 max err | "
        "TFLite fp16 corr | TFLite int8 corr | TFLite int8 / fp32 size |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in NETWORKS:
        ir, state, x2, _ = shipped_case(name, 64)
        x = calibration_images(ir, 20, 8)
        with tempfile.TemporaryDirectory() as scratch:
            for sub in ("a", "b"):
                Path(scratch, sub).mkdir()
            (fp32,) = emit(ir, Path(scratch, "a"), weights=state)
            calibration = Calibration("random", x, x, np.zeros(len(x), np.int64))
            (int8,) = emit(ir, Path(scratch, "b"), weights=state, quantize="int8", calibration=calibration)
            model = onnx.load(str(int8))
            onnx.checker.check_model(model, full_check=True)
            checks = "ok" if not tensorrt_problems(model) else "; ".join(tensorrt_problems(model))
            ort = [session(path, threads=1).run(None, {"input": x})[0] for path in (fp32, int8)]
            onnx_corr = np.corrcoef(ort[0].ravel(), ort[1].ravel())[0, 1]
            onnx_size = int8.stat().st_size / fp32.stat().st_size
        keras_model = keras_build(ir, weights=state)
        nhwc, nhwc2 = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, x2))
        tfl32 = convert(keras_model)
        err = np.abs(run(tfl32, nhwc2) - np.asarray(keras_model(nhwc2, training=False))).max()
        reference = np.asarray(keras_model(nhwc, training=False))
        f16 = run(convert(keras_model, quantize="float16"), nhwc)
        tfl8 = convert(keras_model, quantize="int8", calibration=Calibration("random", x, x, np.zeros(8, np.int64)))
        i8 = run(tfl8, nhwc)
        corr16 = np.corrcoef(reference.ravel(), f16.ravel())[0, 1]
        corr8 = np.corrcoef(reference.ravel(), i8.ravel())[0, 1]
        lines.append(
            f"| {name} | {checks} | {onnx_corr:.3f} | {onnx_size:.2f} | {err:.1e} | {corr16:.4f} | {corr8:.3f} | "
            f"{len(tfl8) / len(tfl32):.2f} |"
        )
        print(lines[-1], file=sys.stderr)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="a finished `specdsl train` run of digits_tiny to reuse")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_edge_acceptance.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run_dir
        train_note = f"reused run {run_dir}"
        if run_dir is None:
            run_dir = Path(scratch, "run")
            command = ["specdsl", "train", str(SPEC), "-o", str(run_dir), "--threads", "1"]
            subprocess.run([sys.executable, "-m", "specdsl", *command[1:]], check=True, capture_output=True)
            train_note = f"`{' '.join(command)}`"
        lines = [
            "# Edge deployment acceptance (benchmarks/edge_acceptance.py)",
            "",
            f"Command: `python benchmarks/edge_acceptance.py`; training: {train_note}. {cpu_name()}, "
            f"{os.cpu_count()} cores; load average {LOAD_AT_START:.2f} at start, {{end_load}} at end.",
            "",
            *trained(run_dir, Path(scratch, "deploy")),
            "",
            *families(),
            "",
            f"Total {time.perf_counter() - started:.0f} s.",
        ]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
