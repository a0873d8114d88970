"""``specdsl grid``: argument wiring only; the work is `specdsl.grid.search` (training needs the ``train`` extra)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specdsl.cli import inputs
from specdsl.cli.train import set_overrides
from specdsl.errors import SpecError, printable, shorten
from specdsl.output.text import table
from specdsl.training.environment import torchrun_environment

_EXAMPLES = """examples:
  specdsl grid specs/digits_tiny.spec -o grids/digits --alpha 1:2:0.2 --beta 1:1.4:0.1 --gamma 1:1.5:0.25
  specdsl grid my_base.spec --data /data/my_images -o grids/mine --jobs 4 --epochs 27
  specdsl grid my_base.spec -o grids/mine ...           # again: continues from grids/mine/results.jsonl
  torchrun --nproc-per-node 8 -m specdsl grid my_base.spec --data /data/my_images -o grids/mine
  specdsl grid my_base.spec -o /shared/grid --shard $SLURM_ARRAY_TASK_ID/16   # one job of an array of 16
"""
_DEFAULT_AXIS = "1.0:2.0:0.1"


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    grid = sub.add_parser(
        "grid",
        parents=parents,
        help="search alpha, beta, gamma under a FLOPs budget (compound scaling's step 1)",
        description=(
            "Search the compound-scaling constants of SPEC: every (alpha, beta, gamma) of the grid is scaled by "
            "phi = 1 with specdsl's rounding; the points whose measured MACs ratio to SPEC lies within the "
            "tolerance of the budget train a short proxy schedule on DATA, pruned by successive halving, and are "
            "ranked by held-out accuracy. OUT receives table.md, results.jsonl, accuracy_vs_macs.png, "
            "summary.json and best.spec (SPEC carrying the found constants). Rerunning with the same OUT continues."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid.add_argument("spec", metavar="SPEC", help="the base network: a spec file or a shipped spec's name")
    grid.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output directory (created; reruns continue)"
    )
    grid.add_argument(
        "--data",
        default="builtin:digits",
        help="builtin:digits (default), or a directory: DIR/train/<class>/*, DIR/val/<class>/*, or only class folders "
        "(a fixed 20%% of each class then held out)",
    )
    space = grid.add_argument_group("search space")
    for axis, what in (("alpha", "depth"), ("beta", "width"), ("gamma", "resolution")):
        space.add_argument(
            f"--{axis}",
            default=_DEFAULT_AXIS,
            metavar="START:STOP:STEP",
            help=f"{what} growth at phi = 1: START:STOP:STEP (ends included), a list a,b,c or one value "
            f"(default {_DEFAULT_AXIS})",
        )
    space.add_argument("--budget", type=float, default=2.0, help="target MACs ratio to SPEC at phi = 1 (default 2)")
    space.add_argument(
        "--tolerance",
        type=float,
        default=0.1,
        help="keep points whose measured ratio is within this fraction of the budget (default 0.1: 1.8 to 2.2)",
    )
    proxy = grid.add_argument_group("proxy training and successive halving")
    proxy.add_argument("--epochs", type=int, default=9, help="proxy epochs of the finalists (default 9)")
    proxy.add_argument("--eta", type=int, default=3, help="each rung keeps 1/eta of the networks, eta x epochs (3)")
    proxy.add_argument("--top", type=int, default=3, help="networks the last rung trains for --epochs (default 3)")
    proxy.add_argument(
        "--train-images", type=int, metavar="N", help="train on a fixed random N of the training images (quicker)"
    )
    proxy.add_argument("--seed", type=int, default=0, help="initialisation, data order and augmentation seed")
    proxy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a training key")
    run = grid.add_argument_group("running")
    run.add_argument("--jobs", type=int, help="parallel trainings (default: one per GPU, else 1)")
    run.add_argument("--threads", type=int, help="torch threads per training (default: the cores divided by --jobs)")
    run.add_argument("--shard", metavar="I/N", help="train every N-th network from the I-th (default: torchrun's rank)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    grid.set_defaults(run=cmd_grid)


_SHARD = re.compile(r"([0-9]{1,9})/([0-9]{1,9})")


def parse_shard(text: str | None, environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``I/N`` with 0 <= I < N; by default torchrun's RANK/WORLD_SIZE (checked), else 0/1."""
    if text is None:
        environment = torchrun_environment(environ)
        return environment.rank, environment.world_size
    found = _SHARD.fullmatch(text.strip())
    shard = (int(found[1]), int(found[2])) if found else (-1, 0)
    if not 0 <= shard[0] < shard[1]:
        raise SpecError("expected I/N with 0 <= I < N, e.g. 0/4", path=f"--shard {printable(shorten(text))}")
    return shard


def cmd_grid(args: argparse.Namespace) -> int:
    from specdsl.backends import BackendUnavailable
    from specdsl.grid.search import GridSettings, check_running
    from specdsl.grid.space import parse_axis

    # Every diagnostic before the framework loads or anything is written: environment, flags, the spec.
    torchrun_environment()
    shard = parse_shard(args.shard)
    recipe, _ = set_overrides(args.set)
    base = inputs.load(args.spec, args.root).spec
    settings = GridSettings(
        alphas=parse_axis(args.alpha, "--alpha"),
        betas=parse_axis(args.beta, "--beta"),
        gammas=parse_axis(args.gamma, "--gamma"),
        data=args.data,
        budget=args.budget,
        tolerance=args.tolerance,
        epochs=args.epochs,
        eta=args.eta,
        top=args.top,
        seed=args.seed,
        recipe=recipe,
        train_images=args.train_images,
    )
    settings.check()
    check_running(args.jobs, args.threads, shard)
    try:
        from specdsl.grid import report, search, worker  # noqa: F401  (worker: the training frameworks)
    except ImportError as error:
        raise BackendUnavailable(f"training needs {error.name}: pip install 'specdsl[train]'") from None
    result = search.search(base, args.output, settings, jobs=args.jobs, threads=args.threads, shard=shard)
    if shard[0] != 0:
        print(f"shard {shard[0]}/{shard[1]} done; shard 0 writes the report into {args.output}", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps(report.summary(result, Path(args.output)), indent=2))
        return 0
    headers, cells = report.table_cells(result)
    print(table(headers, cells, align="r" + "l" + "r" * (len(headers) - 2)))
    chosen = result.chosen
    print(
        f"\nbest: alpha {chosen.alpha:g}, beta {chosen.beta:g}, gamma {chosen.gamma:g} "
        f"(MACs ratio {chosen.ratio:.3f}); "
        f"{result.epochs_spent} epochs trained instead of {result.epochs_full} "
        f"({result.epochs_full - result.epochs_spent} fewer)"
    )
    print(f"wrote {args.output}/ (best.spec, table.md, accuracy_vs_macs.png, results.jsonl, summary.json)")
    return 0
