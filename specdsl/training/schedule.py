"""The progressive-learning plan and the learning-rate curve: pure functions of the recipe, no framework.

This module is the only implementation of both. `specdsl info --schedule` prints `progressive_schedule`,
the trainer runs it, and the tests check it against the published formulas:

* google/automl efficientnetv2/main.py splits training into K equal stages and gives stage i
  (0-based) the image size ``int(ibase + (train_size - ibase) * (i + 1) / K)``: the size grows in
  equal steps and reaches the train size in the last stage (never the minimum itself);
* its RandAugment magnitude and mixup alpha are ``np.linspace(min, max, K)``: the first stage at the
  minimum, the last at the maximum. The V2 paper (Algorithm 1, Table 6) interpolates dropout the same
  way, while google/automl's code leaves dropout constant (it computes the list and deletes it); the
  recipe's ``dropout_schedule`` chooses.

With one stage there is no progression: every quantity is at its maximum (the recipe's target).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from specdsl.ir import ModelIR
from specdsl.spec import Range, TrainingRecipe


@dataclass(frozen=True)
class StagePlan:
    """What one progressive-learning stage trains with. Epochs are 0-based, ``end_epoch`` exclusive."""

    stage: int  # 1-based
    start_epoch: int
    end_epoch: int
    image_size: int
    randaug: float  # google/automl magnitude; 0 = no RandAugment
    mixup: float  # mixup alpha; 0 = no mixup
    dropout: float  # head dropout
    drop_path: float  # stochastic-depth rate of the last block (block i of N drops with drop_path * i / N)

    @property
    def epochs(self) -> int:
        return self.end_epoch - self.start_epoch

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def linspace(start: float, end: float, count: int) -> list[float]:
    """``numpy.linspace(start, end, count)`` exactly (same arithmetic, last value pinned to ``end``)."""
    if count == 1:
        return [start]
    span = end - start
    step = span / (count - 1)
    if step == 0:  # numpy's rule for a step that underflows to zero (numpy gh-5437): i / (count - 1), then the span
        values = [i / (count - 1) * span + start for i in range(count)]
    else:
        values = [i * step + start for i in range(count)]
    values[-1] = end
    return values


def _interpolated(value: Range | None, default: float, count: int) -> list[float]:
    """Per-stage values of a min -> max range: linspace for K >= 2, the maximum for a single stage."""
    if value is None:
        return [default] * count
    return [value.end] if count == 1 else linspace(value.start, value.end, count)


def progressive_schedule(
    recipe: TrainingRecipe, *, train_resolution: int, dropout: float, drop_path: float
) -> list[StagePlan]:
    """The plan for ``recipe``; ``train_resolution``, ``dropout`` and ``drop_path`` are the network's own values,
    used where the recipe gives no range (and, for dropout, always under ``dropout_schedule = automl``)."""
    count = recipe.progressive_stages
    image = recipe.image_size or Range(start=train_resolution, end=train_resolution)
    dropout_range = recipe.dropout if recipe.dropout_schedule == "paper" else None
    columns = {
        "randaug": _interpolated(recipe.randaug, 0.0, count),
        "mixup": _interpolated(recipe.mixup, 0.0, count),
        "dropout": _interpolated(dropout_range, dropout, count),
        "drop_path": _interpolated(recipe.drop_path, drop_path, count),
    }
    plan = []
    for index in range(count):
        ratio = float(index + 1) / float(count)  # google/automl: (stage + 1) / total_stages
        plan.append(
            StagePlan(
                stage=index + 1,
                start_epoch=recipe.epochs * index // count,
                end_epoch=recipe.epochs * (index + 1) // count,
                image_size=int(image.start + (image.end - image.start) * ratio),
                **{name: values[index] for name, values in columns.items()},
            )
        )
    return plan


def schedule_of(ir: ModelIR) -> list[StagePlan]:
    """The plan of a resolved network's recipe."""
    return progressive_schedule(
        ir.training,
        train_resolution=ir.train_resolution,
        dropout=ir.head.dropout,
        drop_path=ir.spec.defaults.drop_path,
    )


def stage_at(plan: list[StagePlan], epoch: int) -> StagePlan:
    """The stage that trains 0-based ``epoch``."""
    return next(stage for stage in plan if stage.start_epoch <= epoch < stage.end_epoch)


@dataclass(frozen=True)
class LearningRate:
    """google/automl's WarmupLearningRateSchedule, per optimizer step: linear warmup from 0 to ``peak`` over
    ``warmup_steps``, then staircase exponential decay (counted from step 0, as automl does) or cosine to 0."""

    peak: float
    steps_per_epoch: int
    total_steps: int
    warmup_epochs: float
    decay: str  # "exponential" or "cosine"
    decay_epochs: float
    decay_factor: float

    @classmethod
    def of(cls, recipe: TrainingRecipe, *, steps_per_epoch: int, batch_size: int) -> LearningRate:
        return cls(
            peak=recipe.lr * batch_size / 256.0,
            steps_per_epoch=steps_per_epoch,
            total_steps=recipe.epochs * steps_per_epoch,
            warmup_epochs=recipe.warmup_epochs,
            decay=recipe.lr_decay,
            decay_epochs=recipe.lr_decay_epochs,
            decay_factor=recipe.lr_decay_factor,
        )

    def __call__(self, step: int) -> float:
        warmup_steps = int(self.warmup_epochs * self.steps_per_epoch)
        if step < warmup_steps:
            return self.peak * step / warmup_steps
        if self.decay == "cosine":
            return 0.5 * self.peak * (1.0 + math.cos(math.pi * step / self.total_steps))
        return self.peak * self.decay_factor ** (step // (self.steps_per_epoch * self.decay_epochs))
