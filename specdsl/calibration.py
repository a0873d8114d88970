"""What quantized exports (int8 ONNX, int8 TFLite) are calibrated and checked with: the `Calibration` value,
its bounds, and the agreement measure.

Backends import this module, so it reads no data and imports nothing above the weights layer: the images are
read by `specdsl.training.calibration` (the trainer's data reader and evaluation view), which the CLI calls
and hands the backend a ready `Calibration` (docs/edge.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
