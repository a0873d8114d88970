"""``specdsl train``: argument wiring only; the work is `specdsl.training.train` (needs the ``train`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from specdsl.errors import SpecError
from specdsl.frontend.syntax import parse_text

_EXAMPLES = """examples:
  specdsl train specs/digits_tiny.spec -o runs/digits            # builtin:digits, CPU or the first GPU
  specdsl train v2_s -o runs/v2_s --data /data/imagenet --amp bf16 --channels-last --workers 8
  specdsl train v2_s -o runs/v2_s --data /data/imagenet --resume  # continue a stopped run
  specdsl train b0 -o runs/b0 --set optimizer=sgd --set lr=0.1 --set "image_size=128 -> 224"
  torchrun --nproc-per-node 8 -m specdsl train v2_s -o runs/v2_s --data /data/imagenet
"""


def add_parser(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train a spec's recipe (progressive learning) with PyTorch",
        description=(
            "Train the network of SPEC with its `training` recipe: EfficientNetV2 progressive learning (image "
            "size, RandAugment, mixup, dropout growing over stages), the recipe's optimizer and EMA. Writes "
            "checkpoints, best.safetensors, metrics.jsonl, the resolved spec and plot.png into RUN_DIR. Under "
            "torchrun every process runs this command and they train together (DDP)."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("spec", metavar="SPEC")
    train.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory")
    train.add_argument(
        "--data",
        default="builtin:digits",
        help="builtin:digits (default), or a directory: DIR/train/<class>/*, DIR/val/<class>/*, or only class folders "
        "(a fixed 20%% of each class then held out)",
    )
    recipe = train.add_argument_group("recipe overrides (the spec's training keys)")
    recipe.add_argument("--epochs", type=int, help="training.epochs")
    recipe.add_argument("--batch-size", type=int, help="training.batch_size (global, over all processes)")
    recipe.add_argument("--lr", type=float, help="training.lr (per 256 images)")
    recipe.add_argument("--optimizer", choices=["rmsprop_tf", "sgd", "adamw"], help="training.optimizer")
    recipe.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any training key")
    run = train.add_argument_group("running")
    run.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")
    run.add_argument("--force", action="store_true", help="start afresh in a RUN_DIR that holds another run")
    run.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    run.add_argument("--seed", type=int, default=0, help="initialisation, data order and augmentation seed (32 bits)")
    run.add_argument("--workers", type=int, default=0, help="DataLoader processes decoding images (default: 0)")
    run.add_argument("--amp", choices=["bf16", "fp16"], help="autocast precision (fp16: CUDA only)")
    run.add_argument("--channels-last", action="store_true", help="NHWC weights and activations")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument(
        "--compile-backend", metavar="NAME", help="torch.compile backend (default: inductor; implies --compile)"
    )
    run.add_argument("--memory-efficient", action="store_true", help="recompute block activations in backward")
    run.add_argument("--threads", type=int, help="torch threads per process")
    run.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    run.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    run.add_argument("--stop-at-epoch", type=int, metavar="N", help="stop after N epochs; --resume continues")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    tune = train.add_argument_group("fine-tuning (docs/weights.md)")
    tune.add_argument(
        "--init",
        metavar="WEIGHTS",
        help="start from these weights (canonical, or any file `specdsl weights import` reads); a classifier of "
        "another class count is rebuilt for the data",
    )
    tune.add_argument("--freeze", metavar="stages.N", help="freeze the stem and stages 0..N (BN statistics too)")
    tune.add_argument("--freeze-bn", action="store_true", help="freeze every BN's statistics")
    tune.add_argument("--lr-decay", type=float, metavar="F", help="layer-wise learning-rate decay, head to stem")
    train.set_defaults(run=cmd_train)


_RECIPE_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr", "optimizer": "--optimizer"}


def recipe_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The flags and each ``--set key=value`` (the value written as in a spec file) as training keys, and the
    flag each key came from (what a diagnostic about it blames)."""
    overrides, sources = set_overrides(args.set)
    for key, flag in _RECIPE_FLAGS.items():
        if getattr(args, key) is not None:
            overrides[key], sources[key] = getattr(args, key), flag
    return overrides, sources


def set_overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Each ``--set key=value`` (the value written as in a spec file) as a training key, and its flag."""
    overrides: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for item in items:
        flag = f"--set {item}"
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set takes KEY=VALUE, got {item!r}", path="--set")
        raw = parse_text(f"training {{ {key.strip()} = {value.strip()} }}", flag)
        entries = [(name, parsed) for section in raw.sections.values() for name, parsed in section.items()]
        if list(raw.sections) != ["training"] or len(entries) != 1:
            raise SpecError(f"--set takes one KEY=VALUE (repeat --set for each key), got {item!r}", path="--set")
        ((name, parsed),) = entries
        overrides[name], sources[name] = parsed.value, flag
    return overrides, sources


def cmd_train(args: argparse.Namespace) -> int:
    from specdsl.backends import BackendUnavailable
    from specdsl.frontend.loader import load_document
    from specdsl.passes.resolve import resolve
    from specdsl.training.environment import torchrun_environment
    from specdsl.training.options import TrainOptions, check_options
    from specdsl.training.recipe import check_run_dir, run_spec_text, with_recipe

    # Every diagnostic before the framework loads: the environment, each flag, the spec, the run directory.
    environment = torchrun_environment()
    overrides, sources = recipe_overrides(args)
    options = TrainOptions(
        data=args.data,
        recipe=overrides,
        device=args.device,
        seed=args.seed,
        workers=args.workers,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile_backend or True if args.compile or args.compile_backend else False,
        memory_efficient=args.memory_efficient,
        threads=args.threads,
        deterministic=args.deterministic,
        eval_every=args.eval_every,
        stop_at_epoch=args.stop_at_epoch,
        resume=args.resume,
        force=args.force,
        quiet=args.quiet,
        init=args.init,
        freeze=args.freeze,
        freeze_bn=args.freeze_bn,
        lr_decay=args.lr_decay,
    )
    check_options(options)
    ir = resolve(with_recipe(load_document(args.spec), overrides, sources))
    tuned = args.init is not None or args.freeze is not None or args.freeze_bn or args.lr_decay is not None
    if not tuned:  # a fine-tuned run's resolved spec depends on the data and the init: checked by `train`
        check_run_dir(Path(args.output), run_spec_text(ir), resume=args.resume, force=args.force)
    try:
        from specdsl.training.api import train
    except ImportError as error:
        raise BackendUnavailable(f"training needs {error.name}: pip install 'specdsl[train]'") from None
    result = train(args.spec, args.output, options)
    if environment.rank != 0:  # one report from a torchrun job
        return 0
    best = "none (not evaluated yet)"
    if result.best_epoch >= 0:
        best = f"{100 * result.best_accuracy:.2f}% at epoch {result.best_epoch + 1}"
    if result.trained == 0:  # --resume on a finished (or --stop-at-epoch reached) run: exit 0, nothing written
        print(
            f"nothing left to train: {result.run_dir} has {result.epochs} of {ir.training.epochs} epochs; best {best}"
        )
        return 0
    print(f"trained {result.trained} epochs ({result.epochs} of {ir.training.epochs}) in {result.seconds:.0f} s; "
          f"best held-out accuracy {best}")  # fmt: skip
    names = ["best.safetensors", "metrics.jsonl", "plot.png", "checkpoint/"]
    written = ", ".join(name for name in names if (result.run_dir / name).exists())
    print(f"wrote {result.run_dir}/ ({written})", file=sys.stderr)
    return 0
