"""`train`: a spec's recipe -> a run directory, on this process or as one rank of a torchrun job."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from specdsl.errors import SpecError
from specdsl.frontend.loader import load_document
from specdsl.ir import ModelIR
from specdsl.output.files import cannot_write
from specdsl.passes.resolve import resolve
from specdsl.training import finetune
from specdsl.training.data import check_classes, open_source, with_train_subset
from specdsl.training.distributed import Context
from specdsl.training.log import read_metrics
from specdsl.training.loop import Trainer
from specdsl.training.options import TrainOptions, check_against_torch, check_options
from specdsl.training.recipe import check_run_dir, run_spec_text, with_recipe
from specdsl.training.rundir import BEST_WEIGHTS, SPEC_FILE, clear_run, write_text

__all__ = ["TrainOptions", "TrainResult", "train"]


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
    started_at: int = 0  # epochs completed before this call (a resumed run's checkpoint)

    @property
    def trained(self) -> int:
        """Epochs this call trained: 0 when a resumed run had nothing left to train."""
        return self.epochs - self.started_at


def _prepare_run_dir(run_dir: Path, spec_text: str, options: TrainOptions, ctx: Context) -> None:
    """Check the directory on every rank, then rank 0 clears a forced one and writes the resolved spec."""
    check_run_dir(run_dir, spec_text, resume=options.resume, force=options.force)
    if options.resume:
        return
    ctx.barrier()  # every rank has checked before rank 0 clears anything
    if ctx.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cannot_write(run_dir, error) from None
        clear_run(run_dir)  # the trainer's files of a previous run (--force), nothing else
        write_text(run_dir / SPEC_FILE, spec_text)


def train(spec: str | Path | ModelIR, run_dir: str | Path, options: TrainOptions | None = None) -> TrainResult:
    """Train ``spec`` (a path, a shipped name or an IR) into ``run_dir``; under torchrun, as this rank."""
    options = options or TrainOptions()
    check_options(options)
    started = time.perf_counter()
    run_dir = Path(run_dir)
    doc = spec.spec if isinstance(spec, ModelIR) else load_document(spec)
    doc = with_recipe(doc, options.recipe)
    ir = resolve(doc)
    spec_text = run_spec_text(ir)
    check_against_torch(options)
    # torch's thread count and determinism are process-wide: set for the run, given back after it (a caller's
    # later computations, in this process, run as they did before).
    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    ctx = Context.from_environment(options.device, join=options.distributed)
    try:
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        if options.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        _check_options(options, ctx)
        source = with_train_subset(open_source(options.data, ir.in_channels), options.train_images)
        ir, tuning = finetune.prepare(
            ir,
            len(source.classes),
            init=options.init,
            freeze=options.freeze,
            freeze_bn=options.freeze_bn,
            lr_decay=options.lr_decay,
        )
        spec_text = finetune.spec_text(ir, tuning)
        check_classes(source, ir.head.classes, path=str(spec) if not isinstance(spec, ModelIR) else ir.name)
        _prepare_run_dir(run_dir, spec_text, options, ctx)
        if ctx.is_main:
            finetune.say(tuning, options.quiet)
            if source.note and not options.quiet:
                print(source.note, file=sys.stderr)
        trainer = Trainer(ir, source, run_dir, ctx, options, tuning)
        if options.resume:
            trainer.resume()
        started_at = trainer.progress.epoch
        trainer.run()
        metrics = read_metrics(run_dir / "metrics.jsonl")
        evaluated = [record for record in metrics if record.get("eval_accuracy") is not None]
        return TrainResult(
            run_dir=run_dir,
            epochs=trainer.progress.epoch,
            accuracy=evaluated[-1]["eval_accuracy"] if evaluated else None,
            best_accuracy=trainer.progress.best_accuracy,
            best_epoch=trainer.progress.best_epoch,
            best_weights=run_dir / BEST_WEIGHTS,
            metrics=metrics,
            seconds=time.perf_counter() - started,
            started_at=started_at,
        )
    finally:
        ctx.close()
        threads, deterministic, torch.backends.cudnn.benchmark = previous
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _check_options(options: TrainOptions, ctx: Context) -> None:
    if options.amp == "fp16" and ctx.device.type != "cuda":
        raise SpecError("fp16 autocast needs a CUDA device; use --amp bf16 on CPU", path="--amp")
    inductor = options.compile is True or options.compile == "inductor"
    if inductor and ctx.device.type == "cpu" and shutil.which("g++") is None and shutil.which("c++") is None:
        raise SpecError("torch.compile on CPU needs a C++ compiler (g++)", path="--compile")
