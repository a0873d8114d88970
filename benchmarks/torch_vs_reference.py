"""specdsl's PyTorch EfficientNet-B0 against efficientnet-pytorch's, on CPU: latency, train step, peak memory.

Why: the backend must not be a slower or hungrier way to get the same network. Both models run in
one process with the same weights (imported from the reference, so the logits agree, which the
report checks), runs alternate between them every repetition (the order flips each time, so drift
in machine load hits both), and medians are reported. Peak training memory is measured per
configuration in a fresh child process (see ``measure_memory``). Ratios are specdsl / reference.

    python benchmarks/torch_vs_reference.py [--quick] [--threads N] [--clock wall|cpu] [--out FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timing  # benchmarks/timing.py: this folder is sys.path[0] when run as a script
import torch
from frontend import cpu_name
from timing import Row
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
RESOLUTION = 224
TRAIN_BATCH = 8
CLASSES = 1000
STARTED = time.perf_counter()
clock = timing.CLOCKS["wall"]
LOAD_AT_START = os.getloadavg()[0]
# Memory children: large blocks always go to mmap, so freeing them lowers RSS at once and the
# high-water mark follows the live tensor bytes instead of glibc's adaptive heap (see measure_memory).
CHILD_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


@dataclass(frozen=True)
class Settings:
    """Repetition counts; ``--quick`` trades precision for a smoke run of about a minute."""

    warmup: int
    infer_reps: int
    train_reps: int
    memory_reps: int
    memory_steps: int


FULL = Settings(warmup=3, infer_reps=30, train_reps=12, memory_reps=3, memory_steps=3)
QUICK = Settings(warmup=1, infer_reps=3, train_reps=1, memory_reps=1, memory_steps=2)


# ----------------------------------------------------------------------------------------------- models


def build_reference() -> nn.Module:
    """efficientnet-pytorch B0 with its plain swish (its custom-autograd swish is a memory option, not the default)."""
    from efficientnet_pytorch import EfficientNet as Reference

    torch.manual_seed(0)  # efficientnet-pytorch initializes from the global RNG
    reference = Reference.from_name("efficientnet-b0")
    reference.set_swish(memory_efficient=False)
    return reference


def build_ours(reference: nn.Module | None, memory_efficient: bool = False) -> nn.Module:
    """specdsl B0, with the reference's weights when given (so both compute the same function)."""
    import specdsl
    from specdsl.interop import efficientnet_pytorch as from_efficientnet_pytorch

    ir = specdsl.load(ROOT / "specs" / "b0.spec")
    state = None if reference is None else from_efficientnet_pytorch.import_weights(reference, ir)
    return specdsl.build(ir, backend="torch", weights=state, seed=0, memory_efficient=memory_efficient)


def build_pair(memory_efficient: bool = False) -> tuple[nn.Module, nn.Module]:
    """(reference, specdsl) B0 with identical weights."""
    reference = build_reference()
    return reference, build_ours(reference, memory_efficient)


def images(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(seed))


def labels(batch: int, seed: int) -> torch.Tensor:
    return torch.randint(0, CLASSES, (batch,), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- timing


def timed_row(
    label: str, goal: float | None, reference: Callable[[], object], ours: Callable[[], object], warmup: int, reps: int
) -> Row:
    """`timing.timed_row` with this run's clock, logged."""
    return timing.logged(timing.timed_row(label, goal, reference, ours, warmup, reps, clock), STARTED)


def inference_step(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def step() -> object:
        with torch.inference_mode():
            return model(x)

    return step


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], object]:
    """Forward + backward + SGD update, the optimizer made once outside the timed region."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


def max_logit_gap(reference: nn.Module, ours: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        return (reference.eval()(x) - ours.eval()(x)).abs().max().item()


def measure_speed(settings: Settings) -> tuple[list[Row], dict[str, float]]:
    """Latency (eager and fused) at batch 1 and 8, and train-step time at batch 8, in milliseconds."""
    reference, ours = build_pair()
    reference.eval()
    ours.eval()
    fused = specdsl_fused(ours)
    checks = {
        "eager": max_logit_gap(reference, ours, images(2, 1)),
        "fused": max_logit_gap(reference, fused, images(2, 1)),
    }
    rows = []
    warmup, reps = settings.warmup, settings.infer_reps
    for batch in (1, 8):
        x = images(batch, seed=batch)
        label = f"eager inference, batch {batch}"
        rows.append(timed_row(label, 1.0, inference_step(reference, x), inference_step(ours, x), warmup, reps))
    for batch in (1, 8):
        x = images(batch, seed=batch)
        label = f"deployed inference (fused), batch {batch}"
        rows.append(timed_row(label, 0.85, inference_step(reference, x), inference_step(fused, x), warmup, reps))
    del fused
    x, y = images(TRAIN_BATCH, seed=3), labels(TRAIN_BATCH, seed=4)
    warmup, reps = max(1, settings.warmup - 1), settings.train_reps
    label = f"train step, batch {TRAIN_BATCH}"
    rows.append(timed_row(label, 1.0, train_step(reference, x, y), train_step(ours, x, y), warmup, reps))
    ours_nhwc = build_ours(reference).to(memory_format=torch.channels_last)
    label = f"train step, batch {TRAIN_BATCH}, channels_last weights"
    rows.append(timed_row(label, None, train_step(reference, x, y), train_step(ours_nhwc, x, y), warmup, reps))
    del ours_nhwc
    del ours
    gc.collect()
    reference, ours_me = build_pair(memory_efficient=True)
    label = f"train step, batch {TRAIN_BATCH}, memory_efficient=True"
    rows.append(timed_row(label, None, train_step(reference, x, y), train_step(ours_me, x, y), warmup, reps))
    return rows, checks


def specdsl_fused(model: nn.Module) -> nn.Module:
    """A BN-folded copy (``model.fuse()`` works in place)."""
    import copy

    return copy.deepcopy(model).fuse()


# ----------------------------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(config: str, steps: int) -> dict[str, float | str]:
    """In a fresh process: build one configuration; return the RSS peak of ``steps`` train steps over the RSS before."""
    if config == "reference":
        model = build_reference()
    else:
        model = build_ours(None, memory_efficient=config == "ours-memory-efficient")
    step = train_step(model, images(TRAIN_BATCH, seed=3), labels(TRAIN_BATCH, seed=4))
    gc.collect()
    try:  # Linux >= 4.0: "5" resets the peak-RSS counter (VmHWM) to the current RSS.
        Path("/proc/self/clear_refs").write_text("5")
        baseline_kib, method = _status_kib("VmRSS"), "VmHWM after clear_refs"
    except OSError:  # then the peak since process start, which the build may already have set
        baseline_kib, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
    for _ in range(steps):
        step()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if method == "ru_maxrss" else _status_kib("VmHWM")
    return {"peak_mib": (peak_kib - baseline_kib) / 1024, "baseline_mib": baseline_kib / 1024, "method": method}


def measure_memory(settings: Settings, threads: int) -> tuple[list[Row], str]:
    """Peak RSS growth during training, per configuration, each in its own fresh process.

    A process's peak RSS is its own, so children run side by side, as many as the cores hold at
    ``threads`` each (more would only slow them down: OpenMP threads stall on a shared core).
    """
    configs = ["reference", "ours", "ours-memory-efficient"]
    jobs = [config for _ in range(settings.memory_reps) for config in configs]
    width = max(1, (os.cpu_count() or 1) // threads)
    peaks: dict[str, list[float]] = {config: [] for config in configs}
    method = ""
    env = {**os.environ, **CHILD_MALLOC_ENV, "PYTHONWARNINGS": "ignore"}
    for start in range(0, len(jobs), width):
        children = []
        for config in jobs[start : start + width]:
            command = [sys.executable, __file__, "--memory-child", config, "--threads", str(threads)]
            command += ["--memory-steps", str(settings.memory_steps)]
            popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            children.append((config, popen))
        for config, child in children:
            stdout, stderr = child.communicate(timeout=600)
            if child.returncode != 0:
                raise RuntimeError(f"memory child {config} failed:\n{stderr[-3000:]}")
            result = json.loads(stdout.strip().splitlines()[-1])
            peaks[config].append(result["peak_mib"])
            method = result["method"]
    ref = statistics.median(peaks["reference"])
    rows = [
        Row(f"peak train memory, batch {TRAIN_BATCH}", "MiB", ref, statistics.median(peaks["ours"]), None),
        Row(
            f"peak train memory, batch {TRAIN_BATCH}, memory_efficient=True",
            "MiB",
            ref,
            statistics.median(peaks["ours-memory-efficient"]),
            0.85,
        ),
    ]
    return rows, method


# ----------------------------------------------------------------------------------------------- report


def report(
    rows: list[Row], checks: dict[str, float], memory_method: str, settings: Settings, command: str, clock_name: str
) -> str:
    import efficientnet_pytorch

    threads = torch.get_num_threads()
    lines = [
        "# specdsl vs efficientnet-pytorch: EfficientNet-B0 on CPU",
        "",
        f"Command: `{command}`",
        "",
        f"- CPU: {cpu_name()} ({os.cpu_count()} logical cores visible); `torch.set_num_threads({threads})`; "
        f"1-minute load average {LOAD_AT_START:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (anything "
        "else running on the cores skews the timings: OpenMP threads wait on each other at every op)",
        f"- torch {torch.__version__}, efficientnet-pytorch {efficientnet_pytorch.__version__}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- {RESOLUTION} px, float32, fixed seeds; reference = `EfficientNet.from_name('efficientnet-b0')` with "
        "`set_swish(memory_efficient=False)`; specdsl = `specs/b0.spec` with the reference's weights imported "
        f"(max |logit difference|: eager {checks['eager']:.2e}, fused {checks['fused']:.2e})",
        f"- timings ({timing.CLOCK_NOTES[clock_name]}): median of {settings.infer_reps} inference / "
        f"{settings.train_reps} train repetitions after "
        f"{settings.warmup} warm-up, {timing.METHOD}; inference under `torch.inference_mode()` in eval mode; a "
        "train step is zero_grad + forward + cross-entropy + backward + SGD(momentum 0.9) step in train mode "
        "(dropout and drop-path active)",
        "- deployed = specdsl `model.fuse()` (BN folded into the convs, weights channels_last, inputs NCHW); the "
        "reference has no fused mode, so it runs eager",
        f"- peak train memory: each configuration in a fresh process (median of {settings.memory_reps}), "
        f"{settings.memory_steps} train steps; reported = peak RSS during the steps minus RSS just "
        f"before them (model, optimizer and batch already built), read as {memory_method}; children run with "
        "`MALLOC_MMAP_THRESHOLD_=65536` so freed tensors leave RSS at once and the peak tracks live memory",
        "",
        *timing.table(rows),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark specdsl's PyTorch EfficientNet-B0 against efficientnet-pytorch on CPU "
        "(ratios = specdsl / reference) and write a markdown table."
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke run, numbers are rough")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch.set_num_threads for every measurement (default: all logical cores, %(default)s here)",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(timing.CLOCKS),
        default="wall",
        help="time repetitions by wall clock (default) or by this process's CPU time; with --threads 1, CPU time "
        "is the latency on an idle core and is immune to other processes time-slicing this one (shared machines)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results_torch.md", help="markdown file to write"
    )
    parser.add_argument(
        "--memory-child", choices=["reference", "ours", "ours-memory-efficient"], help=argparse.SUPPRESS
    )
    parser.add_argument("--memory-steps", type=int, default=FULL.memory_steps, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global clock
    clock = timing.CLOCKS[args.clock]

    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_steps)))
        return 0

    settings = QUICK if args.quick else FULL
    command = " ".join(["python", os.path.relpath(__file__, Path.cwd()), *(argv if argv is not None else sys.argv[1:])])
    started = time.perf_counter()
    rows, checks = measure_speed(settings)
    memory_rows, memory_method = measure_memory(settings, args.threads)
    text = report(rows + memory_rows, checks, memory_method, settings, command, args.clock)
    text += f"Total benchmark time: {time.perf_counter() - started:.0f} s.\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
