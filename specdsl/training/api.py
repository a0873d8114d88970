"""`train`: a spec's recipe -> a run directory, on this process or as one rank of a torchrun job."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from specdsl.errors import SpecError
from specdsl.frontend.loader import load_document
from specdsl.ir import ModelIR
from specdsl.passes.resolve import resolve
from specdsl.training.data import open_source, with_train_subset
from specdsl.training.distributed import Context
from specdsl.training.log import read_metrics
from specdsl.training.loop import LoopSettings, Trainer
from specdsl.training.recipe import SPEC_FILE, check_run_dir, run_spec_text, with_recipe


@dataclass(frozen=True)
class TrainOptions:
    """How to run; what to train is the spec's ``training`` section (override keys with ``recipe``)."""

    data: str = "builtin:digits"
    recipe: Mapping[str, Any] = field(default_factory=dict)  # training keys overriding the spec's
    device: str | None = None  # default: cuda if available, else cpu
    seed: int = 0
    workers: int = 0  # DataLoader processes decoding images
    amp: Literal["bf16", "fp16"] | None = None
    channels_last: bool = False
    compile: bool | str = False  # True: inductor; or a torch.compile backend name
    memory_efficient: bool = False
    threads: int | None = None  # torch intra-op threads per process
    deterministic: bool = False
    eval_every: int = 1
    eval_batch_size: int = 256
    stop_at_epoch: int | None = None  # stop after this many epochs (resume continues)
    resume: bool = False
    force: bool = False  # start afresh in a run directory that holds another run
    quiet: bool = False
    plot: bool = True  # draw plot.png at each stage's end (off for many short runs: specdsl grid)
    distributed: bool = True  # under torchrun, join its process group (False: train alone on this rank)
    train_images: int | None = None  # train on a fixed random subset of this many images (proxy runs)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs: int  # completed
    accuracy: float | None  # held-out accuracy after the last epoch (EMA weights), if evaluated
    best_accuracy: float
    best_epoch: int
    best_weights: Path
    metrics: list[dict[str, Any]]
    seconds: float


def _prepare_run_dir(run_dir: Path, spec_text: str, options: TrainOptions, ctx: Context) -> None:
    """Check the directory on every rank, then rank 0 clears a forced one and writes the resolved spec."""
    check_run_dir(run_dir, spec_text, resume=options.resume, force=options.force)
    if options.resume:
        return
    ctx.barrier()  # every rank has checked before rank 0 clears anything
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "best.safetensors", "best.json", "plot.png"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
        (run_dir / SPEC_FILE).write_text(spec_text)


def train(spec: str | Path | ModelIR, run_dir: str | Path, options: TrainOptions | None = None) -> TrainResult:
    """Train ``spec`` (a path, a shipped name or an IR) into ``run_dir``; under torchrun, as this rank."""
    options = options or TrainOptions()
    started = time.perf_counter()
    run_dir = Path(run_dir)
    doc = spec.spec if isinstance(spec, ModelIR) else load_document(spec)
    doc = with_recipe(doc, options.recipe)
    ir = resolve(doc)
    spec_text = run_spec_text(ir)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    if options.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    ctx = Context.from_environment(options.device, join=options.distributed)
    try:
        _check_options(options, ctx)
        source = with_train_subset(open_source(options.data, ir.in_channels), options.train_images)
        if len(source.classes) != ir.head.classes:
            raise SpecError(
                f"{source.name} has {len(source.classes)} classes but the network has {ir.head.classes} outputs: "
                f"set head {{ classes = {len(source.classes)} }}",
                path=str(spec) if not isinstance(spec, ModelIR) else ir.name,
            )
        _prepare_run_dir(run_dir, spec_text, options, ctx)
        settings = LoopSettings(
            seed=options.seed,
            workers=options.workers,
            amp=options.amp,
            channels_last=options.channels_last,
            compile=options.compile,
            memory_efficient=options.memory_efficient,
            eval_every=options.eval_every,
            eval_batch_size=options.eval_batch_size,
            stop_at_epoch=options.stop_at_epoch,
            quiet=options.quiet,
            plot=options.plot,
        )
        trainer = Trainer(ir, source, run_dir, ctx, settings)
        if options.resume:
            trainer.resume()
        trainer.run()
        metrics = read_metrics(run_dir / "metrics.jsonl")
        evaluated = [record for record in metrics if record.get("eval_accuracy") is not None]
        return TrainResult(
            run_dir=run_dir,
            epochs=trainer.progress.epoch,
            accuracy=evaluated[-1]["eval_accuracy"] if evaluated else None,
            best_accuracy=trainer.progress.best_accuracy,
            best_epoch=trainer.progress.best_epoch,
            best_weights=run_dir / "best.safetensors",
            metrics=metrics,
            seconds=time.perf_counter() - started,
        )
    finally:
        ctx.close()


def _check_options(options: TrainOptions, ctx: Context) -> None:
    if options.amp == "fp16" and ctx.device.type != "cuda":
        raise SpecError("fp16 autocast needs a CUDA device; use --amp bf16 on CPU", path="--amp")
    inductor = options.compile is True or options.compile == "inductor"
    if inductor and ctx.device.type == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        raise SpecError("torch.compile on CPU needs a C++ compiler (g++)", path="--compile")
