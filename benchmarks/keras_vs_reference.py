"""specdsl's Keras models against keras.applications with the same architecture: predict latency on Keras's TF backend.

Why: the Keras backend must not be a slower way to get the same network. Pairs: specs/b0.spec vs
EfficientNetB0 and specs/v2_s.spec vs EfficientNetV2S, each reference built with ``weights=None``
and logits out (``classifier_activation=None``), preprocessing inside both (specdsl's
``include_preprocessing=True``), and specdsl's model holding the reference's weights (imported;
the report gives the max logit difference). Both run through the same call path, and the two
models alternate every repetition (benchmarks/timing.py). Ratios are specdsl / reference.

    python benchmarks/keras_vs_reference.py [--quick] [--threads N] [--clock wall|cpu] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import timing
from frontend import cpu_name
from timing import Row

ROOT = Path(__file__).resolve().parents[1]
PAIRS = {"b0": "EfficientNetB0", "v2_s": "EfficientNetV2S"}
LOAD_AT_START = os.getloadavg()[0]
STARTED = time.perf_counter()


def build_pair(spec: str) -> tuple[object, object, int]:
    """(keras.applications model, specdsl's Keras model with its weights, input size)."""
    import keras

    import specdsl
    from specdsl.interop import keras_applications

    ir = specdsl.load(ROOT / "specs" / f"{spec}.spec")
    keras.utils.set_random_seed(0)
    options = {"include_preprocessing": True} if "V2" in PAIRS[spec] else {}
    reference = getattr(keras.applications, PAIRS[spec])(weights=None, classifier_activation=None, **options)
    state = keras_applications.import_weights(reference, ir)
    if "V2" not in PAIRS[spec]:  # V1's Normalization ignores its unadapted state: give it the spec's, as imagenet would
        norm = next(layer for layer in reference.layers if isinstance(layer, keras.layers.Normalization))
        norm.adapt_mean.assign(np.asarray(ir.normalization.mean, np.float32))
        norm.adapt_variance.assign(np.square(np.asarray(ir.normalization.std, np.float32)))
        norm.finalize_state()
    ours = specdsl.build(ir, backend="keras", weights=state, include_preprocessing=True)
    return reference, ours, ir.resolution


def pixels(batch: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)


def measure_pair(spec: str, reps: int, warmup: int, clock: Callable[[], float]) -> tuple[list[Row], float]:
    """predict_on_batch latency at batch 1 and 8 (plus eager ``model(x)`` at batch 1, for information), and the
    pair's max logit difference relative to the largest logit."""
    import keras

    reference, ours, size = build_pair(spec)
    check = pixels(2, size, seed=0)
    expected = reference.predict_on_batch(check)
    gap = float(np.abs(expected - ours.predict_on_batch(check)).max() / np.abs(expected).max())
    rows = []
    for batch in (1, 8):
        x = pixels(batch, size, seed=batch)
        label = f"{spec} `predict_on_batch`, batch {batch}"
        calls = (lambda: reference.predict_on_batch(x), lambda: ours.predict_on_batch(x))  # noqa: B023 (used here)
        rows.append(timing.logged(timing.timed_row(label, 1.0, *calls, warmup, reps, clock), STARTED))
    x = pixels(1, size, seed=1)
    label = f"{spec} eager `model(x, training=False)`, batch 1"
    calls = (
        lambda: keras.ops.convert_to_numpy(reference(x, training=False)),
        lambda: keras.ops.convert_to_numpy(ours(x, training=False)),
    )
    rows.append(timing.logged(timing.timed_row(label, None, *calls, warmup, reps, clock), STARTED))
    return rows, gap


def report(rows: list[Row], gaps: dict[str, float], reps: dict[str, int], warmup: int, command: str, clock: str) -> str:
    import keras
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    lines = [
        "# specdsl vs keras.applications: Keras predict latency on the TensorFlow backend",
        "",
        f"Command: `{command}`",
        "",
        f"- CPU: {cpu_name()} ({os.cpu_count()} logical cores visible); TensorFlow intra-op threads {threads}; "
        f"1-minute load average {LOAD_AT_START:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (anything "
        "else running on the cores skews the timings)",
        f"- keras {keras.__version__}, tensorflow {tf.__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        "- pairs at the specs' resolutions (b0 224 px, v2_s 384 px), float32, 0-255 NHWC input: specdsl "
        "`build(spec, backend='keras', include_preprocessing=True)` holding the reference's imported weights vs "
        "`keras.applications.EfficientNetB0` / `EfficientNetV2S(weights=None, classifier_activation=None)` "
        "(V1's Normalization given the spec's statistics), seeded random init; max |logit difference| / max |logit|: "
        + ", ".join(f"{spec} {gap:.2e}" for spec, gap in gaps.items()),
        f"- timings ({timing.CLOCK_NOTES[clock]}): median of "
        + ", ".join(f"{reps[spec]} ({spec})" for spec in gaps)
        + f" repetitions after {warmup} warm-up, {timing.METHOD}; both models through the same call: "
        "`predict_on_batch` (Keras's compiled predict function) or eager `model(x, training=False)`",
        "",
        *timing.table(rows),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark specdsl's Keras B0 and V2-S against keras.applications (ratios = specdsl / reference)."
    )
    parser.add_argument("--quick", action="store_true", help="b0 only, few repetitions: a smoke run")
    parser.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: TensorFlow's choice)")
    parser.add_argument(
        "--clock", choices=sorted(timing.CLOCKS), default="wall", help="wall clock (default) or CPU time"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_keras.md", help="markdown file")
    args = parser.parse_args(argv)
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    specs = ["b0"] if args.quick else list(PAIRS)
    reps = {"b0": 3, "v2_s": 2} if args.quick else {"b0": 30, "v2_s": 10}
    warmup = 1 if args.quick else 3
    command = " ".join(["python", os.path.relpath(__file__, Path.cwd()), *(argv if argv is not None else sys.argv[1:])])
    started = time.perf_counter()
    rows, gaps = [], {}
    for spec in specs:
        pair_rows, gaps[spec] = measure_pair(spec, reps[spec], warmup, timing.CLOCKS[args.clock])
        rows += pair_rows
    text = report(rows, gaps, reps, warmup, command, args.clock)
    text += f"Total benchmark time: {time.perf_counter() - started:.0f} s.\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
