"""specdsl's emitted ONNX EfficientNet-B0 in onnxruntime, against a framework export and the PyTorch backend.

Why: the emitter should give a file at least as lean and as fast as what a framework exporter gives,
and deployment through onnxruntime should beat running the PyTorch model. Compared, all holding
efficientnet-pytorch's B0 weights (imported into specdsl, so every logit agrees; the report checks it):

* ``specdsl``: `specdsl.backends.onnx.emit` of ``specs/b0.spec`` (opset 18, BN folded), in onnxruntime;
* ``export``: ``torch.onnx.export`` of ``efficientnet_pytorch.EfficientNet.from_name('efficientnet-b0')``
  (static same padding, ``set_swish(memory_efficient=False)``), with torch's default exporter (dynamo)
  and, for reference, the TorchScript one (``dynamo=False``), in onnxruntime;
* the specdsl PyTorch model, eager and fused (``deploy=True``), in torch.

Every configuration runs in this one process with the same thread count; onnxruntime sessions share one
set of options. Repetitions interleave all configurations (the order rotates), medians are reported
with the ratio of the fastest runs as a check against load. A second table measures what
``--dynamic-size`` costs: the static graph, the dynamic one (``auto_pad=SAME_UPPER``), and the same
with shape-computed Pad nodes instead (the classic dynamic TF-SAME export, built here by rewriting).

    python benchmarks/onnx_vs_reference.py [--quick] [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from frontend import cpu_name  # benchmarks/frontend.py: this folder is sys.path[0] when run as a script
from onnx import helper

ROOT = Path(__file__).resolve().parents[1]
RESOLUTION = 224
LEVEL = "ORT_ENABLE_ALL"  # onnxruntime's default graph optimisation level
LOAD_AT_START = os.getloadavg()[0]
# What a repetition is timed with (--clock): wall clock, or this process's CPU time (all its threads), which
# with one thread is the latency on an idle core and immune to other processes time-slicing this one.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK_NOTES = {"wall": "wall clock, `time.perf_counter`", "cpu": "process CPU time, `time.process_time`"}


def ort_session(path: Path, threads: int, level: str = LEVEL) -> onnxruntime.InferenceSession:
    """The one set of session options every onnxruntime configuration gets (``level``: only for the table of
    files run as written)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def optimized_nodes(path: Path) -> int:
    """Nodes onnxruntime actually runs, after its optimisations at the extended level (the portable one)."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return len(onnx.load(options.optimized_model_filepath, load_external_data=False).graph.node)


# ----------------------------------------------------------------------------------------------- models


def reference_model() -> torch.nn.Module:
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(0)  # efficientnet-pytorch initializes from the global RNG
    model = EfficientNet.from_name("efficientnet-b0")
    model.set_swish(memory_efficient=False)
    padding = type(model._conv_stem).__name__
    if padding != "Conv2dStaticSamePadding":
        raise RuntimeError(f"expected static same padding, got {padding}")
    # BN statistics of a batch (one train-mode pass, momentum 1): activations stay O(1) through the network, so
    # the logit check below compares numbers that matter (fresh statistics fade the signal to ~1e-13).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
    with torch.no_grad():
        model.train()(torch.from_numpy(images(8)))
    return model.eval()


def export(model: torch.nn.Module, path: Path, *, dynamo: bool) -> Path:
    """``torch.onnx.export`` with a dynamic batch, as a deployment would use it."""
    x = torch.zeros(1, 3, RESOLUTION, RESOLUTION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                model, (x,), path, dynamo=True, dynamic_shapes={"inputs": {0: batch}}, input_names=["input"]
            )
        else:
            torch.onnx.export(
                model, (x,), path, dynamo=False, input_names=["input"], dynamic_axes={"input": {0: "batch"}}
            )
    return path


def computed_pads(path: Path, out: Path) -> Path:
    """The --dynamic-size graph with each ``auto_pad=SAME_UPPER`` conv preceded by TF SAME pads computed from the
    input's shape (Shape, Slice, integer arithmetic, Concat, Pad): what a framework export of dynamic
    same padding looks like, for measuring what auto_pad saves."""
    model = onnx.load(str(path))
    graph = model.graph
    constants = {"zeros2": [0, 0], "one": [1], "zero": [0], "two": [2], "start": [2], "end": [4]}
    for name, values in constants.items():
        graph.initializer.append(helper.make_tensor(f"pads.{name}", onnx.TensorProto.INT64, [len(values)], values))
    nodes = []
    for node in graph.node:
        auto_pad = next((a for a in node.attribute if a.name == "auto_pad"), None)
        if node.op_type != "Conv" or auto_pad is None:
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel, stride = attrs["kernel_shape"][0], attrs["strides"][0]
        p = f"{node.name}.pad"
        for name, values in ((f"{p}.k", [kernel]), (f"{p}.s", [stride])):
            graph.initializer.append(helper.make_tensor(name, onnx.TensorProto.INT64, [1], values))
        x = node.input[0]
        nodes += [
            helper.make_node("Shape", [x], [f"{p}.shape"], name=f"{p}.shape"),
            helper.make_node("Slice", [f"{p}.shape", "pads.start", "pads.end"], [f"{p}.hw"], name=f"{p}.hw"),
            # out = ceil(hw / s); total = max((out - 1) * s + k - hw, 0); begin = total // 2; end = total - begin
            helper.make_node("Add", [f"{p}.hw", f"{p}.s"], [f"{p}.a"], name=f"{p}.a"),
            helper.make_node("Sub", [f"{p}.a", "pads.one"], [f"{p}.b"], name=f"{p}.b"),
            helper.make_node("Div", [f"{p}.b", f"{p}.s"], [f"{p}.out"], name=f"{p}.out"),
            helper.make_node("Sub", [f"{p}.out", "pads.one"], [f"{p}.c"], name=f"{p}.c"),
            helper.make_node("Mul", [f"{p}.c", f"{p}.s"], [f"{p}.d"], name=f"{p}.d"),
            helper.make_node("Add", [f"{p}.d", f"{p}.k"], [f"{p}.e"], name=f"{p}.e"),
            helper.make_node("Sub", [f"{p}.e", f"{p}.hw"], [f"{p}.f"], name=f"{p}.f"),
            helper.make_node("Max", [f"{p}.f", "pads.zero"], [f"{p}.total"], name=f"{p}.total"),
            helper.make_node("Div", [f"{p}.total", "pads.two"], [f"{p}.begin"], name=f"{p}.begin"),
            helper.make_node("Sub", [f"{p}.total", f"{p}.begin"], [f"{p}.end"], name=f"{p}.end"),
            helper.make_node(
                "Concat", ["pads.zeros2", f"{p}.begin", "pads.zeros2", f"{p}.end"], [f"{p}.pads"], axis=0, name=p
            ),
            helper.make_node("Pad", [x, f"{p}.pads"], [f"{p}.out_x"], name=f"{p}.apply"),
        ]
        node.input[0] = f"{p}.out_x"
        node.attribute.remove(auto_pad)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


# ----------------------------------------------------------------------------------------------- timing


def interleaved(
    runs: dict[str, Callable[[], object]], warmup: int, reps: int, clock: Callable[[], float] = time.perf_counter
) -> dict[str, list[float]]:
    """Seconds per call of each callable; every repetition calls all of them, in an order that rotates, so that
    drift in machine load hits each configuration alike."""
    for _ in range(warmup):
        for run in runs.values():
            run()
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        if rep % 2:
            order.reverse()
        for name in order:
            start = clock()
            runs[name]()
            times[name].append(clock() - start)
    return times


def ort_run(session: onnxruntime.InferenceSession, x: np.ndarray) -> Callable[[], object]:
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


def torch_run(model: torch.nn.Module, x: np.ndarray) -> Callable[[], object]:
    tensor = torch.from_numpy(x)

    def run() -> object:
        with torch.inference_mode():
            return model(tensor)

    return run


def images(batch: int, size: int = RESOLUTION) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 3, size, size)).astype(np.float32)


# ----------------------------------------------------------------------------------------------- report


def ms(values: list[float]) -> str:
    return f"{1e3 * statistics.median(values):.1f}"


def speedup_table(times: dict[str, list[float]], ours: str) -> list[str]:
    """Markdown rows: each configuration's median and how much faster ``ours`` is (median and fastest runs)."""
    rows = [
        "| configuration | median ms | specdsl ONNX speed-up over it | of minima |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in times.items():
        speedup = statistics.median(values) / statistics.median(times[ours])
        rows.append(f"| {name} | {ms(values)} | {speedup:.3f}x | {min(values) / min(times[ours]):.3f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run, numbers are rough")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for onnxruntime and torch")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="time by wall clock (default) or by this process's CPU time (with --threads 1: immune to other load)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_onnx.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="specdsl-onnx-bench-") as tmp:
        text = report(args, Path(tmp), argv)
    args.out.write_text(text)
    print(text)
    return 0


def report(args: argparse.Namespace, tmp: Path, argv: list[str] | None) -> str:
    """Build every configuration under ``tmp``, time them and return the markdown report."""
    warmup, reps = (1, 3) if args.quick else (3, 30)
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    import specdsl
    from specdsl.backends.onnx import emit
    from specdsl.interop.efficientnet_pytorch import import_weights

    reference = reference_model()
    ir = specdsl.load(ROOT / "specs" / "b0.spec")
    state = import_weights(reference, ir)
    eager = specdsl.build(ir, weights=state).eval()
    fused = specdsl.build(ir, weights=state, deploy=True)
    (tmp / "static").mkdir()
    (tmp / "dynamic").mkdir()
    (ours,) = emit(ir, tmp / "static", weights=state)
    (dynamic,) = emit(ir, tmp / "dynamic", weights=state, dynamic_size=True)
    files = {
        "specdsl (emitted)": ours,
        "export, dynamo (torch default)": export(reference, tmp / "dynamo.onnx", dynamo=True),
        "export, TorchScript (dynamo=False)": export(reference, tmp / "torchscript.onnx", dynamo=False),
    }
    sessions = {name: ort_session(path, args.threads) for name, path in files.items()}

    x = images(2)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(x)).numpy()
    gaps = {name: float(np.abs(ort_run(s, x)()[0] - expected).max()) for name, s in sessions.items()}
    with torch.inference_mode():
        for name, model in (("specdsl torch, eager", eager), ("specdsl torch, fused", fused)):
            gaps[name] = float(np.abs(model(torch.from_numpy(x)).numpy() - expected).max())

    lines = [
        "# specdsl ONNX vs torch.onnx.export and the PyTorch backend: EfficientNet-B0 on CPU",
        "",
        f"Command: `python {os.path.relpath(__file__, Path.cwd())} {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"- CPU: {cpu_name()} ({os.cpu_count()} logical cores visible); 1-minute load average {LOAD_AT_START:.2f} "
        "at the start, {end_load} at the end (other processes on the cores skew wall-clock timings)",
        f"- onnxruntime {onnxruntime.__version__} (CPUExecutionProvider), onnx {onnx.__version__}, torch "
        f"{torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- every onnxruntime session: `intra_op_num_threads={args.threads}`, `inter_op_num_threads=1`, sequential, "
        f"`graph_optimization_level={LEVEL}` (onnxruntime's default); torch: `torch.set_num_threads({args.threads})`,"
        " `torch.inference_mode()`",
        f"- {RESOLUTION} px float32; timed by {CLOCK_NOTES[args.clock]}; median of {reps} repetitions after "
        f"{warmup} warm-up, all configurations of a "
        "table interleaved (order rotated every repetition); speed-up = baseline median / this median "
        "(> 1: faster); ratio of minima likewise with the fastest runs",
        "- same weights everywhere (efficientnet-pytorch's seeded B0 with BN statistics of a batch, imported); max "
        f"|logit difference| to efficientnet-pytorch eager (largest |logit| {np.abs(expected).max():.2f}): "
        + ", ".join(f"{name} {gap:.1e}" for name, gap in gaps.items()),
        "",
        "## Files",
        "",
        "| file | opset | nodes | nodes after onnxruntime (extended) | Pad / Shape nodes | size |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    counts = {}
    for name, path in files.items():
        model = onnx.load(str(path))
        kinds = [node.op_type for node in model.graph.node]
        counts[name] = len(kinds)
        opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
        size = sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))
        lines.append(
            f"| {name} | {opset} | {len(kinds)} | {optimized_nodes(path)} | {kinds.count('Pad')} / "
            f"{kinds.count('Shape')} | {size / 1e6:.2f} MB |"
        )
    export_name = "export, dynamo (torch default)"
    fewer = counts["specdsl (emitted)"] < counts[export_name]
    lines += [
        "",
        f"Goal: fewer nodes than the export ({export_name}): {counts['specdsl (emitted)']} vs "
        f"{counts[export_name]}: {'yes' if fewer else '**no**'}.",
        "",
    ]

    for batch in (1, 8):
        x = images(batch)
        runs = {name: ort_run(session, x) for name, session in sessions.items()}
        runs["specdsl torch, eager"] = torch_run(eager, x)
        runs["specdsl torch, fused"] = torch_run(fused, x)
        times = interleaved(runs, warmup, reps, clock)
        ours_median = statistics.median(times["specdsl (emitted)"])
        lines += [f"## Latency, batch {batch}", "", *speedup_table(times, "specdsl (emitted)")]
        for name, goal in ((export_name, 0.9), ("specdsl torch, eager", 0.6)):
            ratio = ours_median / statistics.median(times[name])
            minima = min(times["specdsl (emitted)"]) / min(times[name])
            met = "yes" if ratio <= goal else "**no**"
            lines.append("")
            lines.append(
                f"Goal: specdsl ONNX <= {goal}x the latency of {name}: {ratio:.3f}x (minima {minima:.3f}x): {met}."
            )
        lines.append("")

    unoptimized = {name: ort_session(path, args.threads, "ORT_DISABLE_ALL") for name, path in files.items()}
    times = interleaved(
        {name: ort_run(session, images(1)) for name, session in unoptimized.items()}, warmup, reps, clock
    )
    lines += [
        "## The files as written (batch 1, `ORT_DISABLE_ALL`)",
        "",
        "What a runtime without onnxruntime's graph rewrites pays for each file's own nodes (information only).",
        "",
        *speedup_table(times, "specdsl (emitted)"),
        "",
    ]

    computed = computed_pads(dynamic, tmp / "computed_pads.onnx")
    variants = {
        "static (default)": ours,
        "--dynamic-size (auto_pad=SAME_UPPER)": dynamic,
        "shape-computed pads": computed,
    }
    lines += [
        "## What --dynamic-size costs (batch 1)",
        "",
        "| graph | nodes | Pad / Shape nodes | median ms at 224 | x static | median ms at 256 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    variant_sessions = {name: ort_session(path, args.threads) for name, path in variants.items()}
    at_224 = interleaved({n: ort_run(s, images(1)) for n, s in variant_sessions.items()}, warmup, reps, clock)
    dynamic_only = {n: s for n, s in variant_sessions.items() if n != "static (default)"}
    at_256 = interleaved({n: ort_run(s, images(1, 256)) for n, s in dynamic_only.items()}, warmup, reps, clock)
    x256 = images(1, 256)
    auto_pad, shape_computed = (ort_run(session, x256)()[0] for session in dynamic_only.values())
    agree = np.abs(auto_pad - shape_computed).max()
    for name, path in variants.items():
        kinds = [node.op_type for node in onnx.load(str(path)).graph.node]
        ratio = statistics.median(at_224[name]) / statistics.median(at_224["static (default)"])
        other = ms(at_256[name]) if name in at_256 else "-"
        lines.append(
            f"| {name} | {len(kinds)} | {kinds.count('Pad')} / {kinds.count('Shape')} | {ms(at_224[name])} | "
            f"{ratio:.3f}x | {other} |"
        )
    lines += [
        "",
        f"auto_pad and shape-computed pads agree at 256 px: max |logit difference| {agree:.1e}.",
        "",
        f"Total benchmark time: {time.perf_counter() - started:.0f} s.",
        "",
    ]
    return "\n".join(lines).replace("{end_load}", f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
