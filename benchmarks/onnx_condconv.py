"""What the ONNX backend's CondConv (im2col with a dynamic batch, docs/onnx.md "CondConv") costs in onnxruntime.

cc_b0_4e (396M MACs) and b0 (390M MACs) as emitted (opset 18, BN folded where foldable), in onnxruntime, against the
PyTorch backend's eager model of the same spec, which runs the batch as one conv with ``groups * N`` groups (what ONNX
cannot express with a dynamic batch); and ONNX cc_b0_4e against ONNX b0 (nearly the same MACs). Same canonical
weights (`specdsl.weights.initial`) in both frameworks of a row; information only, no goal.

    python benchmarks/onnx_condconv.py [--quick] [--threads N] [--clock cpu|wall] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from frontend import cpu_name  # benchmarks/frontend.py: this folder is sys.path[0] when run as a script
from timing import CLOCK_NOTES, CLOCKS, METHOD, Row, logged, table, timed_row

import specdsl
from specdsl import weights
from specdsl.backends.onnx import build, session

ROOT = Path(__file__).resolve().parents[1]


def runners(name: str, batch: int, threads: int) -> tuple[Callable[[], object], Callable[[], object]]:
    """(PyTorch backend eager, onnxruntime) on one batch of 224 px inputs, with the same weights."""
    ir = specdsl.load(name)
    state = weights.initial(ir, seed=0)
    model = specdsl.build(ir, weights=state).eval()
    onnx_session = session(build(ir, weights=state), threads=threads)
    x = np.random.default_rng(batch).standard_normal((batch, 3, ir.resolution, ir.resolution)).astype(np.float32)
    tensor = torch.from_numpy(x)

    def eager() -> object:
        with torch.inference_mode():
            return model(tensor)

    return eager, lambda: onnx_session.run(None, {"input": x})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run, numbers are rough")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for onnxruntime and torch")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_onnx_condconv.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock, load_at_start, started = CLOCKS[args.clock], os.getloadavg()[0], time.perf_counter()
    warmup, reps = (1, 3) if args.quick else (3, 15)
    rows: list[Row] = []
    for batch in (1, 8):
        cc_eager, cc_onnx = runners("cc_b0_4e", batch, args.threads)
        b0_eager, b0_onnx = runners("b0", batch, args.threads)
        for label, reference, ours in (
            (f"cc_b0_4e batch {batch}: ONNX vs PyTorch eager", cc_eager, cc_onnx),
            (f"b0 batch {batch}: ONNX vs PyTorch eager", b0_eager, b0_onnx),
            (f"batch {batch}: ONNX cc_b0_4e vs ONNX b0", b0_onnx, cc_onnx),
        ):
            rows.append(logged(timed_row(label, None, reference, ours, warmup, reps, clock), started))
    lines = [
        "# ONNX CondConv (im2col, dynamic batch) in onnxruntime",
        "",
        f"Command: `{' '.join(['python benchmarks/onnx_condconv.py', *(sys.argv[1:] if argv is None else argv)])}`",
        "",
        f"- CPU: {cpu_name()}; 1-minute load average {load_at_start:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end",
        f"- onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, Python {platform.python_version()}",
        f"- {args.threads} thread(s) in both; 224 px float32; timed by {CLOCK_NOTES[args.clock]}; median of {reps} "
        f"repetitions after {warmup} warm-up; {METHOD}",
        "- 'reference' is the first model of the row, 'specdsl' the second (ratio < 1: the second is faster)",
        "",
        *table(rows),
    ]
    args.out.write_text("\n".join(lines))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
