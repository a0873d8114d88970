"""Every shipped spec's ``"strides"`` taps in torch, onnxruntime and Keras against the numpy oracle, at the spec's
own resolution (issue #20's acceptance; the test suite checks five specs at 64 px, as full resolution takes minutes
per spec).

Per spec, smallest MACs first: random canonical weights with BN statistics calibrated by the oracle on one image
(`tests.calibrated`: activations stay O(1), so float32 rounding stays small), that image (batch 1) through the
oracle's backbone lowering (float64) and each backend's backbone built from the same weights; the error of a tap
is max |backend - oracle| / max |oracle|, and a spec passes when every tap of every backend is within 1e-4. The torch
backbone is also run in float64, which tells float32 rounding (large in the deepest specs) from a wrong op. Specs
up to ``--other-max-gmacs`` are also run at another size (the spec's resolution + 32, weights calibrated there):
torch with the model built at the spec's resolution (it pads at run time), ONNX built with ``dynamic_size=True``,
Keras built with ``resolution=``. One row is appended per spec as it finishes, so a partial run is a result; a
spec whose oracle would hold more than ``--max-oracle-gib`` (its float64 activations at batch 1, every op's output
kept) is listed as skipped with that number.

    nice -n 19 python benchmarks/features_all_specs.py [--threads 1] [--only b0,mixnet_s] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # relative to the tap's largest value (issue #20)
SEED = 40


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for numpy, torch, onnxruntime and TensorFlow")
    parser.add_argument("--only", help="comma-separated spec names (default: every shipped spec)")
    parser.add_argument("--other-max-gmacs", type=float, default=1.0, help="also check another size up to this")
    parser.add_argument("--max-oracle-gib", type=float, default=12.0, help="skip specs whose oracle needs more")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_features_all_specs.md")
    return parser.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy, torch or TensorFlow start their thread pools
    threads_variables = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
    for variable in (*threads_variables, "TF_NUM_INTEROP_THREADS"):
        os.environ[variable] = str(ARGS.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))  # tests.calibrated: the suite's calibrated random weights

import numpy as np  # noqa: E402

import specdsl  # noqa: E402
from specdsl import reference  # noqa: E402
from specdsl.api import at_resolution  # noqa: E402
from specdsl.ir import ModelIR  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402

BACKENDS = ("torch", "onnx", "keras")  # float32, as built; "torch float64" is a column of its own


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(np.asarray(got, np.float64) - expected).max() / max(np.abs(expected).max(), 1e-12))


def oracle_gib(ir: ModelIR) -> float:
    """What the oracle holds at once: every op's float64 output for one image."""
    return specdsl.analyze(ir, dtype="float64").activation_bytes / 2**30


def case(ir: ModelIR) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
    """Calibrated weights of the whole network, the calibration image (NCHW, batch 1) and the oracle's taps."""
    from tests.calibrated import calibration_images, random_weights

    state = random_weights(ir, SEED, calibration=1)
    x = calibration_images(ir, SEED, 1)
    return state, x, reference.run(lower(ir, features="strides"), state, x)


def torch_taps(ir: ModelIR, state: dict[str, np.ndarray], x: np.ndarray, *, double: bool = False) -> list[np.ndarray]:
    """The torch backbone's taps, in float32 (as built) or, ``double``, the same module in float64: what separates
    float32 rounding from a wrong op when the float32 error is large."""
    import torch

    model = specdsl.build(ir, weights=state, features="strides").eval()
    dtype = torch.float64 if double else torch.float32
    with torch.no_grad():
        return [m.double().numpy() for m in model.to(dtype)(torch.as_tensor(x, dtype=dtype))]


def onnx_taps(ir: ModelIR, state: dict[str, np.ndarray], x: np.ndarray, *, dynamic: bool) -> list[np.ndarray]:
    from specdsl.backends.onnx.runtime import session

    model = specdsl.build(ir, backend="onnx", weights=state, features="strides", dynamic_size=dynamic)
    ort = session(model, threads=ARGS.threads)
    return ort.run(None, {"input": np.asarray(x, np.float32)})


def keras_taps(ir: ModelIR, state: dict[str, np.ndarray], x: np.ndarray, size: int) -> list[np.ndarray]:
    import keras

    model = specdsl.build(ir, backend="keras", weights=state, features="strides", resolution=size)
    out = model(np.transpose(x, (0, 2, 3, 1)).astype(np.float32), training=False)
    maps = [np.transpose(keras.ops.convert_to_numpy(value), (0, 3, 1, 2)) for value in out.values()]
    del model
    keras.backend.clear_session()
    return maps


def errors(ir: ModelIR, size: int) -> dict[str, float | str]:
    """Worst tap error per backend at ``size`` (the spec's resolution, or another one for models built at it)."""
    at_size = at_resolution(ir, size)
    state, x, expected = case(at_size)
    runs = {
        "torch": lambda: torch_taps(ir, state, x),
        "onnx": lambda: onnx_taps(ir, state, x, dynamic=size != ir.resolution),
        "keras": lambda: keras_taps(ir, state, x, size),
    }
    if size == ir.resolution:
        runs["torch float64"] = lambda: torch_taps(ir, state, x, double=True)
    worst: dict[str, float | str] = {}
    for backend, run in runs.items():
        try:
            maps = run()
        except Exception as error:  # one backend's failure is a cell of the table, not the end of the run
            worst[backend] = f"{type(error).__name__}: {str(error)[:80]}"
            continue
        if len(maps) != len(expected):
            worst[backend] = f"{len(maps)} taps, the oracle has {len(expected)}"
        else:
            worst[backend] = max(relative_error(m, e) for m, e in zip(maps, expected, strict=True))
        gc.collect()
    return worst


def cell(error: float | str) -> str:
    if isinstance(error, str):
        return f"**{error.replace('|', '/')}**"
    return f"{error:.2e}" + ("" if error <= TOLERANCE else " **FAIL**")


def header(threads: int) -> str:
    import platform

    import keras
    import onnxruntime
    import torch

    command = "nice -n 19 python " + " ".join(["benchmarks/features_all_specs.py", *sys.argv[1:]])
    return "\n".join(
        [
            "# Feature taps of every shipped spec against the numpy oracle, at the spec's resolution",
            "",
            f"Command: `{command}` (started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
            "",
            f"- {threads} thread(s) for numpy, torch, onnxruntime and TensorFlow; {os.cpu_count()} logical cores "
            f"visible; 1-minute load average {os.getloadavg()[0]:.2f} at the start (other sessions share the cores)",
            f"- torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, keras {keras.__version__} "
            f"({keras.backend.backend()}), numpy {np.__version__}, Python {platform.python_version()}",
            f'- `"strides"` taps, batch 1, weights `tests.calibrated.random_weights(ir, {SEED}, calibration=1)` '
            "and its calibration image; error = max |backend - oracle| / max |oracle| over each tap, the worst tap "
            f"per backend; pass: <= {TOLERANCE:g}",
            "- other size: the spec's resolution + 32, weights calibrated there; torch and ONNX models built at the "
            "spec's resolution (torch pads at run time, ONNX `dynamic_size=True`), Keras built with `resolution=`",
            "- seconds: the whole row (calibration, oracle and three backends; twice with another size)",
            "- torch float64: the torch backbone converted to float64 (`model.double()`), on the same weights and "
            "image: how close the same module comes without float32 rounding (not part of the pass criterion)",
            "",
            "| spec | resolution | GMACs | taps | torch | onnx | keras | torch float64 "
            "| other size | torch | onnx | keras | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
    )


def main() -> None:
    names = ARGS.only.split(",") if ARGS.only else sorted(p.stem for p in (ROOT / "specs").glob("*.spec"))
    irs = sorted((specdsl.analyze(specdsl.load(n)).macs, n) for n in names)
    import torch

    torch.set_num_threads(ARGS.threads)
    ARGS.out.write_text(header(ARGS.threads) + "\n")
    started = time.perf_counter()
    for macs, name in irs:
        ir = specdsl.load(name)
        taps = len(lower(ir, features="strides").taps)
        gib = oracle_gib(ir)
        first = f"| {name} | {ir.resolution} | {macs / 1e9:.2f} | {taps} |"
        if gib > ARGS.max_oracle_gib:
            row = f"{first} skipped: the oracle needs {gib:.1f} GiB | | | | | | | | |"
        else:
            begun = time.perf_counter()
            at = errors(ir, ir.resolution)
            if macs / 1e9 <= ARGS.other_max_gmacs:
                size = ir.resolution + 32
                more = errors(ir, size)
                other = f" {size} | " + " | ".join(cell(more[b]) for b in BACKENDS) + " |"
            else:
                other = " - | | | |"
            row = (
                f"{first} "
                + " | ".join(cell(at[b]) for b in (*BACKENDS, "torch float64"))
                + f" |{other} {time.perf_counter() - begun:.0f} |"
            )
        with ARGS.out.open("a") as file:
            file.write(row + "\n")
        print(row, flush=True)
        gc.collect()
    with ARGS.out.open("a") as file:
        file.write(
            f"\nFinished: {len(irs)} specs in {time.perf_counter() - started:.0f} s; 1-minute load average "
            f"{os.getloadavg()[0]:.2f} at the end.\n"
        )


if __name__ == "__main__":
    main()
