"""Calibration and check images for quantized exports (int8 ONNX, int8 TFLite), read from the user's data.

One data reader and one preprocessing: `specdsl.training.data` opens the data (``builtin:digits`` or an
ImageFolder, with its checks: one line naming a bad file or folder) and `specdsl.training.evaluate.held_out`
turns images into what the network takes, with the trainer's evaluation view (centre crop or whole image,
resized to the evaluation resolution, normalised by the network's own mean and std).

* calibration images: ``count`` images of the train split, evenly spaced over it (ImageFolder lists
  class by class, so the first ``count`` would be one class), always the same ones;
* check images: the held-out split (at most `MAX_CHECK_IMAGES`, evenly spaced), on which the fp32 and the
  quantized model are both run after writing: top-1 agreement and both accuracies are printed and recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specdsl.errors import SpecError
from specdsl.ir import ModelIR

#: Default and largest number of calibration images (--calibration-images).
DEFAULT_IMAGES = 200
MAX_IMAGES = 10_000
#: Held-out images the fp32 and quantized models are compared on (fewer where `MAX_BYTES` says so).
MAX_CHECK_IMAGES = 1000
#: Memory for the preprocessed calibration images, and again for the check images (float32 at the spec's
#: evaluation resolution): 1 GiB is 1,780 images at 224 px, 248 at b7's 600 px.
MAX_BYTES = 1 << 30


@dataclass
class Calibration:
    """What a backend quantizes with: normalised NCHW float32 images, and the held-out images and labels that
    it measures the quantized model on. ``measured`` is filled by the backend (`compare`)."""

    data: str
    images: np.ndarray
    check_images: np.ndarray
    check_labels: np.ndarray
    method: str = "minmax"
    measured: dict[str, Any] = field(default_factory=dict)


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


def compare(reference: np.ndarray, quantized: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Top-1 agreement of two logit arrays over the same images, and each one's accuracy where labels exist."""
    top_ref, top_q = reference.argmax(1), quantized.argmax(1)
    result: dict[str, Any] = {"images": len(top_ref), "agreement": float((top_ref == top_q).mean())}
    if labels is not None:
        result["accuracy_fp32"] = float((top_ref == labels).mean())
        result["accuracy_quantized"] = float((top_q == labels).mean())
    return result


def in_batches(predict: Any, images: np.ndarray, batch: int = 50) -> np.ndarray:
    """``predict`` over ``images`` in fixed-size batches (bounded memory), concatenated."""
    return np.concatenate([np.asarray(predict(images[i : i + batch])) for i in range(0, len(images), batch)])
