"""Calibration and check images for quantized exports, read from the user's data through the trainer's reader.

One data reader and one preprocessing: `specdsl.training.data` opens the data (``builtin:digits`` or an
ImageFolder, with its checks: one line naming a bad file or folder) and `specdsl.training.evaluate.held_out`
turns images into what the network takes, with the trainer's evaluation view (centre crop or whole image,
resized to the evaluation resolution, normalised by the network's own mean and std).

* calibration images: ``count`` images of the train split, evenly spaced over it (ImageFolder lists
  class by class, so the first ``count`` would be one class), always the same ones;
* check images: the held-out split (at most `MAX_CHECK_IMAGES`, evenly spaced), on which the fp32 and the
  quantized model are both run after writing: top-1 agreement and both accuracies are printed and recorded.

The result is a `specdsl.calibration.Calibration`, the value backends quantize with; this module lives with the
trainer so that backends never reach it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from specdsl.calibration import DEFAULT_IMAGES, MAX_BYTES, MAX_CHECK_IMAGES, MAX_IMAGES, Calibration
from specdsl.errors import SpecError
from specdsl.ir import ModelIR


def _evenly(total: int, count: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, total - 1, min(count, total)).round()})


def _view(ir: ModelIR, source: Any, split: Any, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``indices`` of ``split`` through the trainer's evaluation view (`evaluate.held_out`)."""
    from specdsl.training.data import SubsetSplit
    from specdsl.training.evaluate import held_out

    subset = SubsetSplit(split, indices, [split.labels[i] for i in indices])
    batches = list(held_out(ir, dataclasses.replace(source, held_out=subset)))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def load(ir: ModelIR, data: str, *, count: int = DEFAULT_IMAGES, method: str = "minmax") -> Calibration:
    """Open ``data`` and read the calibration and check images for ``ir``; bad data is a `SpecError` naming it."""
    if not 1 <= count <= MAX_IMAGES:
        raise SpecError(f"--calibration-images must be 1 to {MAX_IMAGES}, got {count}")
    per_image = 4 * ir.in_channels * ir.resolution * ir.resolution
    if count * per_image > MAX_BYTES:
        raise SpecError(
            f"{count} calibration images at {ir.resolution} px take {count * per_image / 2**30:.1f} GiB "
            f"(limit {MAX_BYTES >> 30} GiB): give at most {MAX_BYTES // per_image}",
            path=f"--calibration-images {count}",
        )
    try:
        from specdsl.training.data import open_source
    except ImportError as error:
        raise SpecError(
            f"reading calibration data needs {error.name}: pip install 'specdsl[edge]'", path=data
        ) from None
    source = open_source(data, ir.in_channels)
    if len(source.train) == 0 or len(source.held_out) == 0:
        raise SpecError("the data has no images to calibrate or check on", path=data)
    images, _ = _view(ir, source, source.train, _evenly(len(source.train), count))
    check_images, labels = _view(
        ir, source, source.held_out, _evenly(len(source.held_out), min(MAX_CHECK_IMAGES, MAX_BYTES // per_image))
    )
    return Calibration(data, images.astype(np.float32), check_images.astype(np.float32), labels, method)
