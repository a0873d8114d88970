"""Classify image files with a trained network, viewing each image as the trainer's evaluation does.

``specdsl predict RUN_DIR IMAGES`` (or ``SPEC --weights FILE``) feeds each image through the trainer's
held-out path (`evaluate.held_out`: `data.eval_view`'s automl centre crop for photographs, or the whole
image for data evaluated whole, resized to the evaluation resolution, then the network's normalisation),
so a run's held-out images, saved as files, get exactly the predictions its best.json records (tested). A
run directory names its classes and its view in best.json; the weights may be any file `specdsl weights
import` reads. Nothing is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specdsl.errors import SpecError
from specdsl.ir import ModelIR
from specdsl.training.data import FileSplit, Source, image_files, open_image
from specdsl.training.rundir import BEST_JSON, BEST_WEIGHTS, SPEC_FILE

#: Most images one command classifies: a listing this long is a mistake (a whole disk), not a batch job.
MAX_IMAGES = 1_000_000
MAX_LABELS_BYTES = 16 * 2**20  # far above any class list (ImageNet-21k names 21,841 classes)


@dataclass(frozen=True)
class Classifier:
    """A network, the weights file to load into it, its class names (empty: unnamed) and its view of images."""

    ir: ModelIR
    weights: Path
    classes: tuple[str, ...] = ()
    center_crop: bool = True

    def label(self, index: int) -> str:
        return self.classes[index] if self.classes else str(index)


@dataclass(frozen=True)
class Prediction:
    path: Path
    top: tuple[tuple[int, float], ...]  # (class index, probability), most probable first


def _run_problem(path: Path, what: str) -> SpecError:
    return SpecError(f"{what}: not a run directory `specdsl train` finished an epoch in", path=str(path))


def open_run(run_dir: Path, weights: str | None = None) -> Classifier:
    """The network ``run_dir`` trained (its spec.spec), its best weights (or ``weights``), and from its best.json
    the class names and view its held-out evaluation used."""
    from specdsl.frontend.loader import load_document
    from specdsl.passes.resolve import resolve
    from specdsl.training.checkpoint import read_best

    if not (run_dir / SPEC_FILE).is_file():
        raise _run_problem(run_dir / SPEC_FILE, "missing")
    ir = resolve(load_document(run_dir / SPEC_FILE))
    best = run_dir / BEST_JSON
    if weights is None and not (run_dir / BEST_WEIGHTS).exists():
        raise _run_problem(run_dir / BEST_WEIGHTS, "missing")
    found = read_best(best, _run_problem) if best.exists() else None
    classes = tuple(found.classes) if found else ()
    if classes and len(classes) != ir.head.classes:
        raise _run_problem(best, f"names {len(classes)} classes; the run's network has {ir.head.classes}")
    center_crop = True if found is None or found.center_crop is None else found.center_crop
    return Classifier(ir, Path(weights) if weights else run_dir / BEST_WEIGHTS, classes, center_crop)


def read_labels(path: str, classes: int) -> tuple[str, ...]:
    """Class names from a text file, one per line in class order (as timm's and torchvision's ImageNet lists): as
    many lines as the network has classes, none blank (names may repeat: ImageNet's do)."""
    from specdsl.errors import SourceSpan
    from specdsl.frontend.loader import read_text_file

    lines = read_text_file(Path(path), path, limit=MAX_LABELS_BYTES, kind="labels").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise SpecError("a blank line: one class name per line", SourceSpan(path=path, line=number, column=1))
    if len(lines) != classes:
        raise SpecError(f"{len(lines)} class names for the network's {classes} classes", path=path)
    return tuple(line.strip() for line in lines)


def image_paths(arguments: Sequence[str]) -> list[Path]:
    """Each argument: an image file, or a directory whose images (directly inside, sorted) are all taken. Every
    header is read now (`open_image`: regular files within the pixel limit), before any network is built."""
    paths: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise SpecError("the directory holds no images", path=argument)
            paths += found
        else:
            with open_image(path):
                paths.append(path)
        if len(paths) > MAX_IMAGES:
            raise SpecError(f"more than {MAX_IMAGES:,} images: give fewer files or directories", path=argument)
    return paths


def _state(ir: ModelIR, path: Path) -> dict[str, np.ndarray]:
    from specdsl.interop.files import import_file
    from specdsl.weights import WeightsError

    try:
        state, _ = import_file(ir, path)
    except WeightsError as error:
        raise SpecError(str(error)) from None
    return state


def predict(
    classifier: Classifier, paths: Sequence[Path], *, top: int = 5, batch_size: int = 32
) -> Iterator[Prediction]:
    """The ``top`` most probable classes of each image, in the order given, ``batch_size`` images at a time."""
    from specdsl.backends.torch.model import build_network
    from specdsl.passes.lower import lower
    from specdsl.training.evaluate import held_out, torch_predictor

    ir = classifier.ir
    model = torch_predictor(build_network(lower(ir), ir, weights=_state(ir, classifier.weights)))
    images = FileSplit(paths, [0] * len(paths), ir.in_channels)
    source = Source("images", (), images, images, center_crop=classifier.center_crop)
    remaining = iter(paths)
    for batch, _ in held_out(ir, source, batch_size):
        logits = np.asarray(model(batch), dtype=np.float64)
        shifted = np.exp(logits - logits.max(1, keepdims=True))
        probabilities = shifted / shifted.sum(1, keepdims=True)
        for row in probabilities:
            order = np.argsort(-row, kind="stable")[:top]
            yield Prediction(next(remaining), tuple((int(k), float(row[k])) for k in order))


def with_view(classifier: Classifier, view: str | None) -> Classifier:
    """``--view crop|whole`` over the run's recorded view."""
    return classifier if view is None else dataclasses.replace(classifier, center_crop=view == "crop")
