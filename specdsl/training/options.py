"""`TrainOptions`, how a run is run, and their checks: every option is validated before any work (and before
torch loads, for ``specdsl train``); what needs torch to tell (is that CUDA device there? is that
``torch.compile`` backend registered?) is `check_against_torch`, called before the first epoch."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from specdsl.errors import SpecError, shorten

#: Seeds are 32-bit: every generator the trainer seeds (torch, numpy, DistributedSampler's) takes them.
SEED_LIMIT = 2**32
#: Bounds on counts of processes and threads: far above any machine, far below what would exhaust one.
MAX_WORKERS = 1024
MAX_THREADS = 1024
_DEVICE = re.compile(r"cpu|mps|cuda(:[0-9]{1,4})?")
_BACKEND = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")


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
    init: str | None = None  # fine-tune from these weights (any format `specdsl weights import` reads)
    freeze: str | None = None  # "stages.N": freeze the stem and stages 0..N
    freeze_bn: bool = False  # freeze every BN's statistics
    lr_decay: float | None = None  # layer-wise learning-rate decay from head to stem


def check_whole(value: Any, flag: str, low: int, high: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if type(value) is not int or not low <= value <= high:
        shown = shorten(str(value)) if type(value) is int else repr(value)
        raise SpecError(f"expected a whole number {low}..{high}, got {shown}", path=flag)


def check_options(options: TrainOptions) -> None:
    """Every option in range, named by its ``specdsl train`` flag (framework-free)."""
    check_whole(options.seed, "--seed", 0, SEED_LIMIT - 1)
    check_whole(options.workers, "--workers", 0, MAX_WORKERS)
    check_whole(options.threads, "--threads", 1, MAX_THREADS, optional=True)
    check_whole(options.eval_every, "--eval-every", 1, 100_000)
    check_whole(options.eval_batch_size, "eval_batch_size", 1, 1_000_000)
    check_whole(options.stop_at_epoch, "--stop-at-epoch", 1, 100_000, optional=True)
    check_whole(options.train_images, "train_images", 1, 10**9, optional=True)
    if options.device is not None and not (isinstance(options.device, str) and _DEVICE.fullmatch(options.device)):
        raise SpecError(f"expected cpu, cuda, cuda:N or mps, got {shorten(str(options.device))!r}", path="--device")
    if options.amp not in (None, "bf16", "fp16"):
        raise SpecError(f"expected bf16 or fp16, got {options.amp!r}", path="--amp")
    backend = options.compile
    if not (backend is True or backend is False or (isinstance(backend, str) and _BACKEND.fullmatch(backend))):
        raise SpecError(f"not a torch.compile backend name: {shorten(str(backend))!r}", path="--compile-backend")
    from specdsl.training.finetune import check_flags

    check_flags(options.init, options.freeze, options.freeze_bn, options.lr_decay)
    if not isinstance(options.recipe, Mapping):
        raise SpecError("expected a mapping of training keys to values", path="recipe")
    flags = ("channels_last", "memory_efficient", "deterministic", "resume", "force", "quiet", "plot", "distributed")
    for name in flags:
        if not isinstance(getattr(options, name), bool):
            raise SpecError(f"expected True or False, got {getattr(options, name)!r}", path=name)


def check_against_torch(options: TrainOptions) -> None:
    """What only torch can tell: the device exists here, the compile backend is registered."""
    import torch

    device = options.device
    if device is not None and device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            found = f"{count} CUDA device(s)" if count else "no CUDA device (torch.cuda.is_available() is False)"
            raise SpecError(f"{device!r} is not here: this machine has {found}", path="--device")
    if device == "mps" and not torch.backends.mps.is_available():
        raise SpecError("'mps' is not available on this machine", path="--device")
    if isinstance(options.compile, str):
        from torch._dynamo import list_backends

        known = list_backends(exclude_tags=())
        if options.compile not in known:
            common = ", ".join(name for name in ("inductor", "eager", "aot_eager", "cudagraphs") if name in known)
            raise SpecError(
                f"unknown torch.compile backend {options.compile!r} (torch._dynamo.list_backends(): {common}, ...)",
                path="--compile-backend",
            )
