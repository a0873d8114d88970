"""Edge deployment speed: fp32 and int8 from one spec, on ONNX Runtime, TFLite (LiteRT) and OpenVINO.

Lite0 and B0 at 224 px with BN-calibrated random weights (tests/calibrated.py), batch 1 and 8, one thread, process
CPU time, every runtime interleaved in one process (`onnx_vs_reference.interleaved`): ORT fp32, ORT int8 (``specdsl
build --quantize int8``'s QDQ file), ORT int8 without the float-kept rule (every op onnxruntime can quantize, Swish
and the SE path too: the trade-off the rule makes), TFLite fp32 and int8 (``--export tflite``, LiteRT's
interpreter, XNNPACK on by default), and OpenVINO reading the same two ``.onnx`` files (the outside anchor;
benchmark-only: skipped with a note when ``openvino`` is not installed). Calibration: 32 random images of the kind
the weights were calibrated on. Reported: median latency, file size, and the int8 files' top-1 agreement and logit
correlation with fp32 on 64 such images (random weights: near-tied logits make agreement a harsh measure; the
trained-weights accuracy is benchmarks/edge_acceptance.py's). Goal: ORT int8 <= 0.5x ORT fp32 on Lite0 at batch 1.
Writes benchmarks/results_edge.md.

    python benchmarks/edge.py [--reps 30] [--networks lite0 b0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from frontend import cpu_name  # this folder is sys.path[0] when run as a script
from onnx_vs_reference import interleaved

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import specdsl  # noqa: E402
from specdsl.backends.keras import build as keras_build  # noqa: E402
from specdsl.backends.keras.tflite import convert, interpreter, run  # noqa: E402
from specdsl.backends.onnx import build, emit, session  # noqa: E402
from specdsl.backends.onnx.emit import save  # noqa: E402
from specdsl.backends.onnx.quantize import quantize  # noqa: E402
from specdsl.calibration import Calibration  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.calibrated import images, random_weights  # noqa: E402

RESOLUTION = 224
LOAD_AT_START = os.getloadavg()[0]


def openvino_runner(path: Path, x: np.ndarray) -> Callable[[], object] | None:
    try:
        import openvino
    except ImportError:
        return None
    core = openvino.Core()
    compiled = core.compile_model(
        str(path), "CPU", {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    )
    request = compiled.create_infer_request()
    return lambda: request.infer({0: x})


def tflite_runner(content: bytes, x: np.ndarray) -> Callable[[], object]:
    runner = interpreter(content, threads=1)
    detail = runner.get_input_details()[0]
    runner.resize_tensor_input(detail["index"], list(x.shape))
    runner.allocate_tensors()
    runner.set_tensor(detail["index"], x)
    return runner.invoke


def files(name: str, scratch: Path) -> dict[str, object]:
    """The four files of one network, and its agreement numbers."""
    ir = specdsl.api.at_resolution(specdsl.load(name), RESOLUTION)
    state = random_weights(ir, 0)
    x = images(32, RESOLUTION, 5)
    check = images(64, RESOLUTION, 6)
    onnx_cal = Calibration("random images", x, check, np.zeros(len(check), np.int64))
    for kind in ("fp32", "int8", "int8-all"):
        (scratch / f"{name}-{kind}").mkdir()
    (fp32,) = emit(ir, scratch / f"{name}-fp32", weights=state)
    (int8,) = emit(ir, scratch / f"{name}-int8", weights=state, quantize="int8", calibration=onnx_cal)
    all_cal = Calibration("random images", x, check, np.zeros(len(check), np.int64))
    everything = quantize(build(ir, weights=state), lower(ir), all_cal, keep_float=False)  # no float-kept rule
    (int8_all,) = save(everything, scratch / f"{name}-int8-all" / "model.onnx")
    model = keras_build(ir, weights=state)
    tfl_cal = Calibration("random images", x, check, np.zeros(len(check), np.int64))
    tfl_fp32, tfl_int8 = convert(model), convert(model, quantize="int8", calibration=tfl_cal)
    run32 = session(fp32, threads=1)
    reference = np.concatenate([run32.run(None, {"input": check[i : i + 8]})[0] for i in range(0, len(check), 8)])
    keras_out = np.asarray(model(check.transpose(0, 2, 3, 1), training=False))
    tfl_out = run(tfl_int8, np.ascontiguousarray(check.transpose(0, 2, 3, 1)))
    return {
        "ort fp32": fp32,
        "ort int8": int8,
        "ort int8 all": int8_all,
        "tflite fp32": tfl_fp32,
        "tflite int8": tfl_int8,
        "agreement": {
            "ort int8": (onnx_cal.measured["agreement"], correlation(reference, int8, check)),
            "ort int8 all (no float-kept rule)": (
                all_cal.measured["agreement"],
                correlation(reference, int8_all, check),
            ),
            "tflite int8": (
                tfl_cal.measured["agreement"],
                float(np.corrcoef(keras_out.ravel(), tfl_out.ravel())[0, 1]),
            ),
        },
    }


def correlation(reference: np.ndarray, path: Path, check: np.ndarray) -> float:
    run = session(path, threads=1)
    out = np.concatenate([run.run(None, {"input": check[i : i + 8]})[0] for i in range(0, len(check), 8)])
    return float(np.corrcoef(reference.ravel(), out.ravel())[0, 1])


def runners(made: dict[str, object], batch: int) -> dict[str, Callable[[], object]]:
    x = images(batch, RESOLUTION, 9)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    result: dict[str, Callable[[], object]] = {}
    for key in ("ort fp32", "ort int8", "ort int8 all"):
        ort = session(made[key], threads=1)
        result[key] = lambda ort=ort: ort.run(None, {"input": x})
    for key in ("tflite fp32", "tflite int8"):
        result[key] = tflite_runner(made[key], nhwc)
    for key in ("ort fp32", "ort int8"):
        runner = openvino_runner(made[key], x)
        if runner is not None:
            result[key.replace("ort", "openvino")] = runner
    return result


def size(value: object) -> int:
    return len(value) if isinstance(value, bytes) else Path(value).stat().st_size  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--networks", nargs="+", default=["lite0", "b0"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_edge.md")
    args = parser.parse_args(argv)
    try:
        import openvino

        anchor = f"OpenVINO {openvino.__version__}"
    except ImportError:
        anchor = None
        print("note: openvino is not installed (pip install openvino): its rows are skipped", file=sys.stderr)
    import onnxruntime
    import tensorflow

    started = time.perf_counter()
    lines = [
        "# Edge deployment: latency, size and agreement (benchmarks/edge.py)",
        "",
        f"Command: `python benchmarks/edge.py {' '.join(argv if argv is not None else sys.argv[1:])}`. One thread "
        f"everywhere; process CPU time (`time.process_time`), median of {args.reps} interleaved repetitions. "
        f"{cpu_name()}, {os.cpu_count()} cores, {platform.python_version()}; onnxruntime {onnxruntime.__version__}, "
        f"TensorFlow {tensorflow.__version__} (LiteRT interpreter from ai-edge-litert, XNNPACK), "
        f"{anchor or 'OpenVINO not installed'}. Load average {LOAD_AT_START:.2f} at start, {{end_load}} at end.",
        "",
        "Random BN-calibrated weights (tests/calibrated.py) at 224 px; int8 calibrated on 32 random images; "
        "agreement and correlation of the int8 logits with fp32 on 64 others.",
        "",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.networks:
            made = files(name, Path(scratch))
            lines += [
                f"## {name}",
                "",
                "| runtime | file | batch 1 ms | batch 8 ms | x fp32 (b1) | size MB | x fp32 size |",
            ]
            lines += ["| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
            timings = {batch: interleaved(runners(made, batch), 3, args.reps, time.process_time) for batch in (1, 8)}
            medians = {b: {k: statistics.median(v) * 1e3 for k, v in t.items()} for b, t in timings.items()}
            for key in medians[1]:
                file_key = key.replace("openvino", "ort")
                base = key.split()[0] + " fp32"
                fp32_size = size(made[file_key.split()[0] + " fp32"])
                lines.append(
                    f"| {key} | {'.onnx' if 'ort' in file_key else '.tflite'} | {medians[1][key]:.2f} | "
                    f"{medians[8][key]:.2f} | {medians[1][key] / medians[1][base]:.2f} | "
                    f"{size(made[file_key]) / 1e6:.2f} | {size(made[file_key]) / fp32_size:.2f} |"
                )
            lines += ["", "| int8 file | top-1 agreement | logit correlation |", "| --- | ---: | ---: |"]
            for key, (agreement, correlation) in made["agreement"].items():  # type: ignore[union-attr]
                lines.append(f"| {key} | {agreement:.1%} | {correlation:.4f} |")
            lines.append("")
            print("\n".join(lines), file=sys.stderr)
    lines.append(f"Total {time.perf_counter() - started:.0f} s.")
    write_report(args.out, lines)
    return 0


def write_report(path: Path, lines: list[str]) -> None:
    """The results file (``{end_load}``: the load average now), also printed."""
    text = "\n".join(lines).replace("{end_load}", f"{os.getloadavg()[0]:.2f}") + "\n"
    path.write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
