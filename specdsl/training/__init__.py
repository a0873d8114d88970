"""Training on the PyTorch backend: EfficientNetV2 progressive learning from a spec's ``training`` recipe.

``specdsl train`` and `train` run it on one process or, under ``torchrun``, on many. `schedule` (the
progressive-learning plan, also printed by ``specdsl info --schedule``), `recipe` (overrides, run
directory checks), `options` (`TrainOptions` and their checks), `environment` (torchrun's variables) and
`rundir` (the run directory's writer rules) are framework-free; every other module needs the ``train`` extra.
Names load lazily, so importing `specdsl.training.schedule` never imports torch. Checking another backend's accuracy:
`specdsl.training.evaluate`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["TrainOptions", "TrainResult", "progressive_schedule", "schedule_of", "train"]

_LAZY = {
    "progressive_schedule": "specdsl.training.schedule",
    "schedule_of": "specdsl.training.schedule",
    "train": "specdsl.training.api",
    "TrainOptions": "specdsl.training.options",
    "TrainResult": "specdsl.training.api",
}

if TYPE_CHECKING:
    from specdsl.training.api import TrainResult, train
    from specdsl.training.options import TrainOptions
    from specdsl.training.schedule import progressive_schedule, schedule_of


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'specdsl.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
