"""``specdsl predict``: argument wiring and printing; the work is `specdsl.training.predict` (the ``train`` extra)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specdsl.cli import inputs
from specdsl.errors import SpecError

if TYPE_CHECKING:
    from specdsl.training.predict import Classifier, Prediction

_EXAMPLES = """examples:
  specdsl predict runs/pets photos/cat.jpg photos/more/       # a run directory: its best weights and class names
  specdsl predict runs/pets photos/ --top 1 --json > predictions.json
  specdsl predict b0 cat.jpg --weights b0.safetensors          # a spec and any weights `weights import` reads
"""

MAX_TOP = 1000
MAX_BATCH = 4096


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    predict = sub.add_parser(
        "predict",
        parents=parents,
        help="classify image files with a trained run or a spec and its weights",
        description=(
            "Print the most probable classes of each image. TARGET is a run directory (`specdsl train -o`: its "
            "spec.spec, best.safetensors, and the class names and image view recorded in best.json) or a spec with "
            "--weights. Each image is viewed as the trainer's held-out evaluation views it: automl's centre crop "
            "(size / (size + 32) of the shorter side) or the whole image, resized to the evaluation resolution, "
            "normalised as the network expects. Nothing is written."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("target", metavar="TARGET", help="a run directory, a spec file or a shipped spec's name")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or directories of them")
    predict.add_argument(
        "--weights", help="weights to load (default for a run: its best.safetensors; needed for a spec)"
    )
    predict.add_argument(
        "--labels", metavar="FILE", help="class names, one per line in class order (default: the run's, else indices)"
    )
    predict.add_argument("--top", type=int, default=5, help="classes per image, most probable first (default: 5)")
    predict.add_argument(
        "--view",
        choices=["crop", "whole"],
        help="centre crop or whole image (default: the run's held-out view; crop for a spec)",
    )
    predict.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: 32)")
    predict.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    predict.add_argument("--json", action="store_true", help="print JSON (numbers as numbers)")
    predict.set_defaults(run=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    inputs.check_range("--top", args.top, 1, MAX_TOP)
    inputs.check_range("--batch-size", args.batch_size, 1, MAX_BATCH)
    inputs.check_range("--threads", args.threads, 1, 1024)
    try:
        from specdsl.training import predict as predicting
        from specdsl.training.data import check_channels
    except ImportError as error:
        raise SpecError(f"predict needs {error.name}: pip install 'specdsl[train]'") from None

    if Path(args.target).is_dir():
        classifier = predicting.open_run(Path(args.target), args.weights)
    elif args.weights is None:
        raise SpecError(
            "a spec needs --weights (a random network predicts nothing)",
            path=args.target,
            hint="give --weights FILE, or a run directory that `specdsl train -o` wrote",
        )
    else:
        classifier = predicting.Classifier(inputs.load(args.target, args.root), Path(args.weights))
    classifier = predicting.with_view(classifier, args.view)
    if args.labels is not None:
        classes = predicting.read_labels(args.labels, classifier.ir.head.classes)
        classifier = dataclasses.replace(classifier, classes=classes)
    check_channels(classifier.ir.in_channels, args.target)
    top = min(args.top, classifier.ir.head.classes)
    paths = predicting.image_paths(args.images)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    found = predicting.predict(classifier, paths, top=top, batch_size=args.batch_size)
    found = progress_bar(found, len(paths))
    if args.json:
        records = [_record(classifier, prediction) for prediction in found]
        view = "crop" if classifier.center_crop else "whole"
        report = {"network": classifier.ir.name, "weights": str(classifier.weights), "view": view}
        print(json.dumps({**report, "images": records}, indent=2))
        return 0
    for prediction in found:
        ranked = ", ".join(f"{classifier.label(index)} {probability:.3f}" for index, probability in prediction.top)
        print(f"{prediction.path}: {ranked}")
    sys.stdout.flush()
    return 0


def progress_bar(found: Iterator[Prediction], total: int) -> Iterator[Prediction]:
    """The predictions, counted on a progress bar (on a terminal's stderr only)."""
    from specdsl.training.log import progress_bar as bar

    with bar(total, "predict", enabled=True, unit="image") as shown:
        for prediction in found:
            yield prediction
            shown.update()


def _record(classifier: Classifier, prediction: Prediction) -> dict[str, Any]:
    top = [
        {"class": index, "label": classifier.label(index), "probability": probability}
        for index, probability in prediction.top
    ]
    return {"path": str(prediction.path), "top": top}
