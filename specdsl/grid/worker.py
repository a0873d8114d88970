"""Training the networks of a rung: in this process, or in parallel across local processes and GPUs.

Each parallel job is a *slot*: a device and a share of the CPU threads. With several GPUs every slot is
one GPU (one network per device at a time); on a CPU the cores are split between ``--jobs`` processes.
Workers are spawned (``concurrent.futures`` with the spawn context: no forked CUDA or thread pools),
and each task is handed a free slot, so no two networks share a device unless ``--jobs`` asks for it.
Under torchrun every rank is one shard of the search and trains alone on its own ``cuda:LOCAL_RANK``
(or CPU share); nothing here joins a process group. Needs the ``train`` extra.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from specdsl.errors import SpecError
from specdsl.frontend.loader import loads_document
from specdsl.grid.proxy import Task
from specdsl.passes.resolve import resolve
from specdsl.training.api import train
from specdsl.training.environment import torchrun_environment
from specdsl.training.recipe import has_checkpoint
from specdsl.training.rundir import AFRESH


@dataclass(frozen=True)
class Slot:
    device: str | None  # None: the trainer's choice (cuda:LOCAL_RANK under torchrun, else cuda or cpu)
    threads: int


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def local_slots(jobs: int | None, threads: int | None = None, environ: Mapping[str, str] = os.environ) -> list[Slot]:
    """``jobs`` slots (default: one per GPU, else one) over this machine's GPUs, each with ``threads`` torch
    threads (default: the cores, shared by torchrun's local ranks, divided among the jobs)."""
    sharing = torchrun_environment(environ).local_world_size  # torchrun ranks on this machine (checked)
    if sharing > 1:
        devices: list[str | None] = [None]
    else:
        devices = [f"cuda:{index}" for index in range(torch.cuda.device_count())] or ["cpu"]
    count = jobs or len(devices)
    threads = threads or max(1, cpu_count() // sharing // count)
    return [Slot(devices[index % len(devices)], threads) for index in range(count)]


class ProxyRunError(Exception):
    """A proxy run's diagnostic, as it crosses back from a worker process (a `SpecError` pickles its message
    only): the message, the file it names, and how to start that network afresh."""

    def __init__(self, message: str, path: str | None, hint: str | None) -> None:
        super().__init__(message, path, hint)

    def spec_error(self) -> SpecError:
        message, path, hint = self.args
        return SpecError(message, path=path, hint=hint)


def train_task(task: Task, slot: Slot) -> dict[str, Any]:
    """Train one network to its rung's epoch; its held-out accuracy and loss after exactly that epoch.

    A damaged proxy run (its checkpoint, metrics or spec) is an error naming the file and how to train that
    network afresh (remove its run directory): the search does not delete a run it cannot read."""
    try:
        return _train(task, slot)
    except SpecError as error:
        run_dir = Path(task.run_dir)
        inside = error.path is not None and Path(error.path.split(":")[0]).is_relative_to(run_dir)
        if not inside:
            raise ProxyRunError(error.message, error.path, error.hint) from None
        message = error.message.removesuffix(f"; {AFRESH}")  # `specdsl train`'s way, not a grid's
        hint = f"to train network {run_dir.name} afresh, remove {run_dir} and rerun"
        raise ProxyRunError(message, error.path, hint) from None


def _train(task: Task, slot: Slot) -> dict[str, Any]:
    ir = resolve(loads_document(task.spec_text, f"{task.run_dir}/spec"))
    run_dir = Path(task.run_dir)
    resume = has_checkpoint(run_dir)
    # a directory without a checkpoint holds nothing worth keeping
    options = replace(task.options, device=slot.device, threads=slot.threads, resume=resume, force=not resume)
    result = train(ir, run_dir, options)
    found = [record for record in result.metrics if record.get("epoch") == task.epochs - 1]
    if len(found) != 1 or not all(isinstance(found[0].get(key), float | int) for key in ("eval_accuracy", "eval_loss")):
        raise SpecError(
            f"damaged proxy run: no held-out evaluation of epoch {task.epochs} in its metrics",
            path=str(run_dir / "metrics.jsonl"),
        )
    (last,) = found
    return {
        "accuracy": last["eval_accuracy"],
        "loss": last["eval_loss"],
        "seconds": result.seconds,
        "device": str(slot.device or ("cuda" if torch.cuda.is_available() else "cpu")),
    }


class Runner:
    """Runs tasks on the slots: in this process for one slot, else in a pool of spawned processes kept for the
    whole search (a context manager)."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Runner:
        if len(self.slots) > 1:
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=len(self.slots), mp_context=context)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        """Each task with its result, as they finish."""
        try:
            yield from self._run(tasks)
        except ProxyRunError as error:
            raise error.spec_error() from None

    def _run(self, tasks: list[Task]) -> Iterator[tuple[Task, dict[str, Any]]]:
        if self.pool is None:
            for task in tasks:
                yield task, train_task(task, self.slots[0])
            return
        pending, free = list(tasks), list(self.slots)
        running: dict[Future, tuple[Task, Slot]] = {}
        try:
            while pending or running:
                while pending and free:
                    task, slot = pending.pop(0), free.pop(0)
                    running[self.pool.submit(train_task, task, slot)] = (task, slot)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda item: running[item][0].candidate):
                    task, slot = running.pop(future)
                    free.append(slot)
                    yield task, future.result()
        finally:
            for future in running:
                future.cancel()
