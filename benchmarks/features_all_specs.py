"""Every shipped spec's ``"strides"`` taps in torch, onnxruntime and Keras against the numpy oracle, at the spec's
own resolution and at another one (issue #20's acceptance; the test suite checks five specs at 64 px, as full
resolution takes minutes per spec).

Per spec, smallest MACs first: random canonical weights with BN statistics calibrated by the oracle on one image
(`tests.calibrated`: activations stay O(1)), that image (batch 1) through the oracle's backbone lowering (float64) and
each backend's backbone built from the same weights. The error of a tap is max |backend - oracle| / max |oracle|; a
backend's cell is its worst tap. Three more measurements tell float32 rounding from a wrong op:

- **float32 floor**: the oracle's own arithmetic run in float32 (``reference.run(..., dtype=np.float32)``). No
  float32 implementation of the network can be expected much closer than this; on the deepest specs it is itself
  near or above 1e-4, because random deep networks amplify rounding stage by stage.
- **float64**: each backend's graph in float64 on the same weights: torch ``model.double()``, Keras built under
  ``keras.config.set_floatx("float64")``, and the ONNX graph (BN nodes kept, so the graph holds the canonical
  tensors) with every tensor widened to float64 and run by onnx's reference evaluator (onnxruntime has no float64
  Conv; ONNX float attributes are float32, so `widened` makes BN's epsilon and hard-sigmoid's 1/6 exact tensors).
  Within 1e-9 means the backend computes the oracle's function, op for op.

A backend passes at a size when its float64 run is within 1e-9 and its float32 error is within 1e-4, or, where the
float32 floor exceeds 1e-4 / 3, within 3x the floor (two float32 implementations of one network differ by about
the sum of their roundings; ONNX adds one more rounding by folding BN into the conv weights). Another size: the
spec's resolution + 32, weights calibrated there, torch built at the spec's resolution (it pads at run time), ONNX
built with ``dynamic_size=True``, Keras built with ``resolution=``; float32 only. Each spec runs in a process of its
own, and one row is appended per spec as it finishes, so a partial run is a result.

    nice -n 19 python benchmarks/features_all_specs.py [--threads 1] [--only b0,mixnet_s] [--skip l2] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXACT = 1e-9  # a float64 run of a backend's graph against the float64 oracle
FLOOR_FACTOR = 3.0  # where the float32 floor exceeds TOLERANCE / FLOOR_FACTOR, a backend may be this far from it
SEED = 40


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for numpy, torch, onnxruntime and TensorFlow")
    parser.add_argument("--only", help="comma-separated spec names (default: every shipped spec)")
    parser.add_argument("--skip", default="", help="comma-separated spec names to leave out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_features_all_specs.md")
    return parser.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:  # before numpy, torch or TensorFlow start their thread pools
    threads_variables = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
    for variable in (*threads_variables, "TF_NUM_INTEROP_THREADS"):
        os.environ[variable] = str(ARGS.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))  # tests: the suite's calibrated random weights, bound and error measure

import numpy as np  # noqa: E402

import specdsl  # noqa: E402
from specdsl import reference  # noqa: E402
from specdsl.api import at_resolution  # noqa: E402
from specdsl.ir import ModelIR  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.features.helpers import TOLERANCE, relative_error  # noqa: E402  (the suite's bound and measure)

BACKENDS = ("torch", "onnx", "keras")
Maps = list[np.ndarray]


def torch_taps(ir: ModelIR, state: dict[str, np.ndarray], x: np.ndarray, *, double: bool = False) -> Maps:
    import torch

    model = specdsl.build(ir, weights=state, features="strides").eval()
    dtype = torch.float64 if double else torch.float32
    with torch.no_grad():
        return [m.double().numpy() for m in model.to(dtype)(torch.as_tensor(x, dtype=dtype))]


def onnx_taps(ir: ModelIR, state: dict[str, np.ndarray], x: np.ndarray, *, dynamic: bool) -> Maps:
    """onnxruntime on the graph as built (BN folded), opened from a file: l2's weights exceed protobuf's 2 GiB."""
    import tempfile

    from specdsl.backends.onnx.emit import save
    from specdsl.backends.onnx.runtime import session

    model = specdsl.build(ir, backend="onnx", weights=state, features="strides", dynamic_size=dynamic)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "backbone.onnx"
        save(model, path)
        del model
        threads = int(os.environ["OMP_NUM_THREADS"])  # --threads, also in a spec's own process
        return session(path, threads=threads).run(None, {"input": np.asarray(x, np.float32)})


@functools.cache
def intended(value: float) -> float:
    """The simplest fraction whose float32 rounding is ``value``: what a float32 ONNX attribute stands for (1e-3 for
    BN's epsilon, 1/6 for HardSigmoid's alpha)."""
    for denominator in range(1, 10**6 + 1):
        numerator = round(value * denominator)
        if np.float32(numerator / denominator) == np.float32(value):
            return numerator / denominator
    return value


def widened(model):  # onnx.ModelProto -> the same ModelProto, computing in float64
    """``model`` with every float32 tensor and type as float64, in place. ONNX keeps float attributes in float32,
    so the ones that carry constants become exact float64 tensors: BN's epsilon moves into its variance (epsilon 0);
    HardSigmoid becomes Clip(x * alpha + beta, 0, 1) and HardSwish x * that with alpha 1/6, beta 1/2 (the function
    the ONNX standard defines it by, whose attributes the reference evaluator would otherwise read in float32)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    arrays = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    arrays = {name: a.astype(np.float64) if a.dtype == np.float32 else a for name, a in arrays.items()}

    def hard_sigmoid(x: str, out: str, alpha: float, beta: float) -> list:
        names = [f"{out}/{key}" for key in ("alpha", "beta", "zero", "one", "scaled", "shifted")]
        arrays.update(zip(names[:4], map(np.array, (alpha, beta, 0.0, 1.0)), strict=True))
        return [
            helper.make_node("Mul", [x, names[0]], [names[4]]),
            helper.make_node("Add", [names[4], names[1]], [names[5]]),
            helper.make_node("Clip", [names[5], names[2], names[3]], [out]),
        ]

    nodes = []
    for node in graph.node:
        attributes = {attribute.name: attribute for attribute in node.attribute}
        if node.op_type == "BatchNormalization":
            arrays[node.input[4]] = arrays[node.input[4]] + intended(attributes["epsilon"].f)
            attributes["epsilon"].f = 0.0
            nodes.append(node)
        elif node.op_type == "HardSigmoid":
            alpha, beta = (intended(attributes[key].f) for key in ("alpha", "beta"))
            nodes += hard_sigmoid(node.input[0], node.output[0], alpha, beta)
        elif node.op_type == "HardSwish":
            gate = f"{node.output[0]}/gate"
            nodes += hard_sigmoid(node.input[0], gate, 1 / 6, 0.5)
            nodes.append(helper.make_node("Mul", [node.input[0], gate], list(node.output)))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(array, name) for name, array in arrays.items())
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    return model


def onnx_double_taps(ir: ModelIR, state: dict[str, np.ndarray], x: np.ndarray) -> Maps:
    """The ONNX graph with BN nodes kept, widened to float64 and run node by node by onnx's reference evaluator,
    each value freed after its last reader (the evaluator's own `run` keeps every value: 11 GiB for b7)."""
    import onnx_ir
    from onnx.reference import ReferenceEvaluator

    model = widened(
        onnx_ir.to_proto(specdsl.build(ir, backend="onnx", weights=state, features="strides", keep_bn=True))
    )
    evaluator = ReferenceEvaluator(model)
    outputs = [output.name for output in model.graph.output]
    kept = {*outputs, *evaluator.rt_inits_}
    values = {**evaluator.rt_inits_, "input": np.asarray(x, np.float64)}
    last = {name: index for index, node in enumerate(evaluator.rt_nodes_) for name in node.input}
    for index, node in enumerate(evaluator.rt_nodes_):
        results = node.run(*(values[name] if name else None for name in node.input))
        values.update(zip(node.output, results, strict=True))
        for name in set(node.input) - kept:
            if last[name] == index:
                del values[name]
    return [values[name] for name in outputs]


def keras_taps(ir: ModelIR, state: dict[str, np.ndarray], x: np.ndarray, size: int, *, double: bool = False) -> Maps:
    """The Keras backbone through `predict` (a traced graph: eager calls keep every intermediate map alive, 5.4 GiB
    for b7 in float32)."""
    import keras

    floatx = keras.config.floatx()
    keras.config.set_floatx("float64" if double else "float32")
    try:
        model = specdsl.build(ir, backend="keras", weights=state, features="strides", resolution=size)
        dtype = np.float64 if double else np.float32
        out = model.predict(np.transpose(x, (0, 2, 3, 1)).astype(dtype), batch_size=1, verbose=0)
        maps = [np.transpose(out[tap.name], (0, 3, 1, 2)) for tap in lower(ir, features="strides").taps]
    finally:
        keras.config.set_floatx(floatx)
        keras.backend.clear_session()
    return maps


def worst(run, expected: Maps) -> float | str:
    """The worst tap's error of ``run()``; a failure is a cell of the table, not the end of the run."""
    try:
        maps = run()
    except Exception as error:
        return f"{type(error).__name__}: {str(error)[:80]}"
    finally:
        gc.collect()
    if len(maps) != len(expected):
        return f"{len(maps)} taps, the oracle has {len(expected)}"
    return max(relative_error(m, e) for m, e in zip(maps, expected, strict=True))


def errors(ir: ModelIR, size: int) -> dict[str, float | str]:
    """Worst tap error per measurement at ``size`` (the spec's resolution, or another one for models built at it):
    "floor" and each backend in float32, and at the spec's resolution each backend in float64 ("torch64", ...)."""
    from tests.calibrated import calibration_images, random_weights

    at_size = at_resolution(ir, size)
    state = random_weights(at_size, SEED, calibration=1)
    x = calibration_images(at_size, SEED, 1)
    net = lower(at_size, features="strides")
    expected = reference.run(net, state, x)
    runs = {
        "floor": lambda: reference.run(net, state, x, dtype=np.float32),
        "torch": lambda: torch_taps(ir, state, x),
        "onnx": lambda: onnx_taps(ir, state, x, dynamic=size != ir.resolution),
        "keras": lambda: keras_taps(ir, state, x, size),
    }
    if size == ir.resolution:
        runs |= {
            "torch64": lambda: torch_taps(ir, state, x, double=True),
            "onnx64": lambda: onnx_double_taps(ir, state, x),
            "keras64": lambda: keras_taps(ir, state, x, size, double=True),
        }
    return {key: worst(run, expected) for key, run in runs.items()}


def passes(found: dict[str, float | str]) -> bool:
    floor = found["floor"]
    if isinstance(floor, str):
        return False
    bound = TOLERANCE if floor <= TOLERANCE / FLOOR_FACTOR else max(TOLERANCE, FLOOR_FACTOR * floor)
    within = all(isinstance(found[b], float) and found[b] <= bound for b in BACKENDS)
    exact = all(isinstance(v, float) and v <= EXACT for k, v in found.items() if k.endswith("64"))
    return within and exact


def cell(error: float | str) -> str:
    if isinstance(error, str):
        return f"**{error.replace('|', '/')}**"
    return f"{error:.2e}"


def verdict(*sizes: dict[str, float | str]) -> str:
    if not all(passes(found) for found in sizes):
        return "**FAIL**"
    return "pass" if all(found[b] <= TOLERANCE for found in sizes for b in BACKENDS) else "pass (3x floor)"


def header(threads: int) -> str:
    import platform

    import keras
    import onnx
    import onnxruntime
    import torch

    command = "nice -n 19 python " + " ".join(["benchmarks/features_all_specs.py", *sys.argv[1:]])
    return "\n".join(
        [
            "# Feature taps of every shipped spec against the numpy oracle",
            "",
            f"Command: `{command}` (started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
            "",
            f"- {threads} thread(s) for numpy, torch, onnxruntime and TensorFlow; {os.cpu_count()} logical cores "
            f"visible; 1-minute load average {os.getloadavg()[0]:.2f} at the start (other sessions share the cores)",
            f"- torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}, keras "
            f"{keras.__version__} ({keras.backend.backend()}), numpy {np.__version__}, Python "
            f"{platform.python_version()}",
            f'- `"strides"` taps, batch 1, weights `tests.calibrated.random_weights(ir, {SEED}, calibration=1)` '
            "and its calibration image; error = max |backend - oracle| / max |oracle| over each tap, the worst tap "
            "per cell",
            "- floor: the oracle's arithmetic in float32; float64: each backend's graph in float64 (torch "
            "`.double()`, Keras under `set_floatx('float64')`, the ONNX graph with BN kept, widened, on onnx's "
            "reference evaluator)",
            f"- pass: every float64 cell <= {EXACT:g} and every float32 backend cell <= {TOLERANCE:g}, or, where "
            f"the floor exceeds {TOLERANCE:g} / {FLOOR_FACTOR:g}, <= {FLOOR_FACTOR:g} x floor (the script's "
            "docstring says why)",
            "- other size: the spec's resolution + 32, weights calibrated there; torch and ONNX models built at the "
            "spec's resolution (torch pads at run time, ONNX `dynamic_size=True`), Keras built with `resolution=`",
            "- seconds: the whole row",
            "",
            "| spec | resolution | GMACs | floor | torch | onnx | keras | float64: torch | onnx | keras "
            "| other size | floor | torch | onnx | keras | verdict | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | --- | ---: |",
        ]
    )


def row(name: str, threads: int) -> tuple[str, bool]:
    """One spec's table row and whether it passed, computed in a process of its own (see `main`)."""
    import torch

    torch.set_num_threads(threads)
    ir = specdsl.load(name)
    begun = time.perf_counter()
    at, size = errors(ir, ir.resolution), ir.resolution + 32
    more = errors(ir, size)
    cells = [
        f"| {name} | {ir.resolution} | {specdsl.analyze(ir).macs / 1e9:.2f}",
        *(cell(at[key]) for key in ("floor", *BACKENDS, "torch64", "onnx64", "keras64")),
        str(size),
        *(cell(more[key]) for key in ("floor", *BACKENDS)),
        verdict(at, more),
        f"{time.perf_counter() - begun:.0f} |",
    ]
    return " | ".join(cells), passes(at) and passes(more)


def main() -> None:
    """Each spec runs in a fresh process: what TensorFlow, torch and numpy's allocators keep after one spec would
    otherwise add up to more than the machine holds by the largest (l2: 480M parameters at 800 px)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    skipped = set(filter(None, ARGS.skip.split(",")))
    names = ARGS.only.split(",") if ARGS.only else sorted(p.stem for p in (ROOT / "specs").glob("*.spec"))
    irs = sorted((specdsl.analyze(specdsl.load(n)).macs, n) for n in names if n not in skipped)
    ARGS.out.write_text(header(ARGS.threads) + "\n")
    started = time.perf_counter()
    failed = 0
    spawn = multiprocessing.get_context("spawn")
    for _, name in irs:
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            line, passed = pool.submit(row, name, ARGS.threads).result()
        failed += not passed
        with ARGS.out.open("a") as file:
            file.write(line + "\n")
        print(line, flush=True)
    with ARGS.out.open("a") as file:
        file.write(
            f"\nFinished: {len(irs)} specs in {time.perf_counter() - started:.0f} s, {failed} failed; 1-minute load "
            f"average {os.getloadavg()[0]:.2f} at the end.\n"
        )


if __name__ == "__main__":
    main()
