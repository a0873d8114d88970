"""Training throughput on CPU: specdsl's trainer step against a plain PyTorch loop over efficientnet-pytorch B0.

Both take one optimizer step on a batch of 8 images at 224 px, channels_last, with the same optimizer
(TensorFlow-form RMSProp, the recipe's default) and loss (cross-entropy with label smoothing 0.1), from
the same weights. specdsl's step is `specdsl.training.loop.Trainer.train_step` as training runs it (learning
rate from the schedule, step, zero_grad, and the EMA update when the recipe has one); the reference is the
four-line loop a PyTorch user writes. Data preparation (crops, RandAugment, mixup) is outside both timings.
The two alternate every repetition in one process (timing helpers from timing.py); medians and
the ratio of the fastest runs are reported with the load average.

    python benchmarks/train_throughput.py [--threads N] [--clock wall|cpu] [--reps N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import timing  # this folder is sys.path[0] when run as a script
import torch
import torch.nn.functional as F
import torch_vs_reference as bench
from frontend import cpu_name
from torch import nn

import specdsl
from specdsl.training.data import digits
from specdsl.training.distributed import Context
from specdsl.training.ema import WeightAverage
from specdsl.training.loop import Trainer
from specdsl.training.optim import RMSpropTF
from specdsl.training.options import TrainOptions
from specdsl.training.recipe import with_recipe

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8


def trainer_step(reference: nn.Module, ema_decay: float, channels_last: bool) -> Callable[[], object]:
    """specdsl's step for B0 (the recipe with batch_size 8), starting from the reference's weights."""
    doc = with_recipe(specdsl.load(ROOT / "specs" / "b0.spec").spec, {"batch_size": BATCH, "ema_decay": ema_decay})
    ir = specdsl.api.resolve(doc)
    options = TrainOptions(channels_last=channels_last, quiet=True)
    trainer = Trainer(ir, digits(3), Path(os.devnull), Context(), options)
    with torch.no_grad():
        state = bench.build_ours(reference).state_dict()
        for name, value in trainer.model.state_dict().items():
            value.copy_(state[name])
    trainer.progress.step = 10**6  # past warmup: a real learning rate
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = bench.images(BATCH, 1).contiguous(memory_format=memory_format)
    targets = F.one_hot(bench.labels(BATCH, 2), bench.CLASSES).float()
    trainer.model.train()
    return lambda: trainer.train_step([(x, targets)])


def plain_step(reference: nn.Module, ema_decay: float, channels_last: bool) -> Callable[[], object]:
    """The loop a PyTorch user writes around efficientnet-pytorch, with the same optimizer and loss."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = reference.to(memory_format=memory_format).train()
    optimizer = RMSpropTF(model.parameters(), lr=0.016 * BATCH / 256, decay=0.9, momentum=0.9, eps=1e-3)
    average = WeightAverage(model, ema_decay) if ema_decay else None
    x = bench.images(BATCH, 1).contiguous(memory_format=memory_format)
    y = bench.labels(BATCH, 2)

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(model)
        return loss

    return step


def measure(reps: int, warmup: int) -> list[timing.Row]:
    rows = []
    cases = [
        ("train step, channels_last", 0.0, True, 1.0),
        ("train step, channels_last, EMA 0.9999 in both", 0.9999, True, 1.0),
        ("train step, NCHW", 0.0, False, None),
    ]
    for label, ema_decay, channels_last, goal in cases:
        reference = bench.build_reference()
        ours = trainer_step(reference, ema_decay, channels_last)
        theirs = plain_step(reference, ema_decay, channels_last)
        rows.append(bench.timed_row(label, goal, theirs, ours, warmup, reps))
    return rows


def report(rows: list[timing.Row], command: str, clock_name: str, load_start: float, reps: int) -> str:
    import efficientnet_pytorch

    lines = [
        "# Training throughput: specdsl trainer step vs a plain PyTorch loop, EfficientNet-B0 on CPU",
        "",
        f"Command: `{command}`",
        "",
        f"- CPU: {cpu_name()} ({os.cpu_count()} logical cores visible); `torch.set_num_threads"
        f"({torch.get_num_threads()})`; 1-minute load average {load_start:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end (other engineers' jobs share these cores)",
        f"- torch {torch.__version__}, efficientnet-pytorch {efficientnet_pytorch.__version__}, "
        f"Python {platform.python_version()}",
        f"- batch {BATCH} at {bench.RESOLUTION} px, float32, the same weights; one optimizer step each: TF-form "
        "RMSProp (decay 0.9, momentum 0.9, eps 1e-3 inside the square root), cross-entropy with label smoothing "
        "0.1, train mode (dropout 0.2, drop-path active). specdsl = `Trainer.train_step` (schedule lookup, "
        "step, zero_grad, EMA); reference = zero_grad + forward + loss + backward + step over "
        "`EfficientNet.from_name('efficientnet-b0')` (plain swish), the same EMA code where a row says so",
        f"- timings ({timing.CLOCK_NOTES[clock_name]}): median of {reps} repetitions after warm-up, alternating "
        "(order flipped every repetition) in one process; ratio = specdsl / reference (lower is faster); ratio "
        "of minima = fastest / fastest, a check against interference; images/s = 8 / median step time",
        "",
        "| measurement | reference ms | specdsl ms | reference img/s | specdsl img/s | ratio | ratio of minima "
        "| goal | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for row in rows:
        goal = f"<= {row.goal:.2f}x" if row.goal is not None else "-"
        speeds = f"{1e3 * BATCH / row.reference:.1f} | {1e3 * BATCH / row.ours:.1f}"
        lines.append(
            f"| {row.label} | {row.reference:.0f} | {row.ours:.0f} | {speeds} | {row.ratio:.3f}x | "
            f"{row.min_ratio:.3f}x | {goal} | {row.met} |"
        )
    goals = [row for row in rows if row.goal is not None]
    met = sum(row.ratio <= row.goal for row in goals if row.goal is not None)
    return "\n".join([*lines, "", f"Goals met: {met} of {len(goals)}.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all)")
    parser.add_argument("--clock", choices=sorted(timing.CLOCKS), default="wall", help="wall (default) or cpu time")
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions per row (default: 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (default: 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_train.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench.clock = timing.CLOCKS[args.clock]
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    rows = measure(args.reps, args.warmup)
    command = " ".join(["python", os.path.relpath(__file__, Path.cwd()), *(argv if argv is not None else sys.argv[1:])])
    text = report(rows, command, args.clock, load_start, args.reps)
    text += f"Total benchmark time: {time.perf_counter() - started:.0f} s.\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
