"""The progressive-learning plan and the learning-rate curve against the published formulas (no framework).

The expected values are computed here independently: numpy's linspace and google/automl's
``int(ibase + (train_size - ibase) * (stage + 1) / stages)`` (efficientnetv2/main.py).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import specdsl
from specdsl.errors import SpecError
from specdsl.spec import Range, TrainingRecipe
from specdsl.training.schedule import LearningRate, linspace, progressive_schedule, schedule_of, stage_at
from tests.conftest import SPECS, TINY_SPEC

#: V2 paper Table 6 (min, max): image size, RandAugment, mixup, dropout.
TABLE_6 = {
    "v2_s": ((128, 300), (5, 15), (0, 0), (0.1, 0.3)),
    "v2_m": ((128, 384), (5, 20), (0, 0.2), (0.1, 0.4)),  # the paper's 380 is the code's 384 train size
    "v2_l": ((128, 384), (5, 25), (0, 0.4), (0.1, 0.5)),
}


def expected_plan(recipe: TrainingRecipe, train_size: int, dropout: float, drop_path: float) -> list[dict]:
    """The published formulas, written out again without specdsl's helpers."""
    k = recipe.progressive_stages
    size = recipe.image_size or Range(start=train_size, end=train_size)

    def spaced(value: Range | None, default: float) -> list[float]:
        if value is None:
            return [default] * k
        return [value.end] if k == 1 else [float(v) for v in np.linspace(value.start, value.end, k)]

    dropouts = spaced(recipe.dropout if recipe.dropout_schedule == "paper" else None, dropout)
    randaug, mixup, paths = spaced(recipe.randaug, 0.0), spaced(recipe.mixup, 0.0), spaced(recipe.drop_path, drop_path)
    return [
        {
            "stage": i + 1,
            "start_epoch": recipe.epochs * i // k,
            "end_epoch": recipe.epochs * (i + 1) // k,
            "image_size": int(size.start + (size.end - size.start) * (float(i + 1) / float(k))),
            "randaug": randaug[i],
            "mixup": mixup[i],
            "dropout": dropouts[i],
            "drop_path": paths[i],
        }
        for i in range(k)
    ]


@pytest.mark.parametrize("name", sorted(path.stem for path in SPECS.glob("*.spec")))
def test_shipped_recipes_follow_the_formulas(name: str) -> None:
    ir = specdsl.load(SPECS / f"{name}.spec")
    plan = [stage.to_json() for stage in schedule_of(ir)]
    assert plan == expected_plan(ir.training, ir.train_resolution, ir.head.dropout, ir.spec.defaults.drop_path)
    assert plan[-1]["image_size"] == ir.train_resolution or ir.training.image_size is not None
    assert plan[0]["start_epoch"] == 0 and plan[-1]["end_epoch"] == ir.training.epochs


@pytest.mark.parametrize("name", sorted(TABLE_6))
def test_v2_recipes_are_table_6(name: str) -> None:
    """The paper's ranges, first stage at the minimum and last at the maximum (size: automl's last = train size)."""
    ir = specdsl.load(SPECS / f"{name}.spec")
    plan = schedule_of(ir)
    (size_min, size_max), randaug, mixup, dropout = TABLE_6[name]
    assert ir.training.dropout_schedule == "paper"
    assert (ir.training.image_size.start, plan[-1].image_size) == (size_min, size_max)
    assert (plan[0].randaug, plan[-1].randaug) == randaug
    assert (plan[0].mixup, plan[-1].mixup) == mixup
    assert (plan[0].dropout, plan[-1].dropout) == dropout
    assert [stage.image_size for stage in plan] == [int(size_min + (size_max - size_min) * k / 4) for k in (1, 2, 3, 4)]


def test_v2_b_series_follow_automl_code_and_keep_dropout_constant() -> None:
    for name in ("v2_b0", "v2_b1", "v2_b2", "v2_b3"):
        ir = specdsl.load(SPECS / f"{name}.spec")
        assert ir.training.dropout_schedule == "automl"
        assert {stage.dropout for stage in schedule_of(ir)} == {ir.head.dropout}


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(-5, 5, allow_nan=False),
    end=st.floats(-5, 5, allow_nan=False),
    count=st.integers(1, 64),
)
@example(start=0.0, end=5e-324, count=4)  # a step that underflows to zero: numpy's special case
def test_linspace_is_numpys(start: float, end: float, count: int) -> None:
    assert linspace(start, end, count) == [float(v) for v in np.linspace(start, end, count)]


ranges = st.tuples(st.floats(0, 0.9), st.floats(0, 0.9)).map(lambda pair: Range(start=pair[0], end=pair[1]))


@settings(max_examples=100, deadline=None)
@given(
    stages=st.integers(1, 12),
    extra_epochs=st.integers(0, 50),
    sizes=st.tuples(st.integers(8, 600), st.integers(8, 600)),
    randaug=st.none() | st.tuples(st.floats(0, 30), st.floats(0, 30)).map(lambda p: Range(start=p[0], end=p[1])),
    mixup=st.none() | ranges,
    dropout=st.none() | ranges,
    drop_path=st.none() | ranges,
    automl=st.booleans(),
)
@example(  # a subnormal range end (found by hypothesis): the schedule's linspace follows numpy's underflow rule
    stages=4,
    extra_epochs=0,
    sizes=(8, 8),
    randaug=None,
    mixup=None,
    dropout=None,
    drop_path=Range(start=0.0, end=5e-324),
    automl=False,
)
def test_random_recipes_follow_the_formulas(stages, extra_epochs, sizes, randaug, mixup, dropout, drop_path, automl):
    recipe = TrainingRecipe(
        epochs=stages + extra_epochs,
        progressive_stages=stages,
        image_size=Range(start=sizes[0], end=sizes[1]),
        randaug=randaug,
        mixup=mixup,
        dropout=None if automl else dropout,
        dropout_schedule="automl" if automl else "paper",
        drop_path=drop_path,
    )
    plan = progressive_schedule(recipe, train_resolution=224, dropout=0.25, drop_path=0.2)
    assert [stage.to_json() for stage in plan] == expected_plan(recipe, 224, 0.25, 0.2)
    # Every epoch belongs to exactly one stage.
    assert [stage_at(plan, epoch).stage for epoch in range(recipe.epochs)] == [
        stage.stage for stage in plan for _ in range(stage.epochs)
    ]


def test_one_stage_trains_at_the_maxima() -> None:
    recipe = TrainingRecipe(epochs=3, image_size=Range(start=64, end=96), randaug=Range(start=2, end=9))
    (stage,) = progressive_schedule(recipe, train_resolution=224, dropout=0.2, drop_path=0.2)
    assert (stage.image_size, stage.randaug, stage.start_epoch, stage.end_epoch) == (96, 9.0, 0, 3)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ("epochs = 3 progressive_stages = 4", "3 epochs cannot make 4 progressive stages"),
        ("dropout_schedule = automl dropout = 0.1 -> 0.3", "dropout_schedule = automl keeps head.dropout constant"),
        ("randaug = 5 -> 31", "randaug must lie in [0, 30], got 31"),
        ("dropout = 0.1 -> 1", "dropout must lie in [0, 1), got 1"),
        ("image_size = 4 -> 64", "image_size must lie in [8, 4096], got 4"),
        ("batch_size = 10 grad_accumulation = 4", "batch_size 10 is not a multiple of grad_accumulation"),
        ("optimizer = adam", "optimizer"),
    ],
)
def test_bad_recipes_are_located_diagnostics(training: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        specdsl.loads(TINY_SPEC + f"training {{ {training} }}\n", "bad.spec")
    assert message in str(caught.value)
    assert str(caught.value).startswith("bad.spec:9:")


def test_learning_rate_is_automls_warmup_then_decay() -> None:
    """WarmupLearningRateSchedule: lr * step / warmup_steps, then lr * 0.97^floor(step / (2.4 * steps_per_epoch))."""
    recipe = TrainingRecipe(epochs=10, batch_size=512, lr=0.016, warmup_epochs=2)
    lr = LearningRate.of(recipe, steps_per_epoch=100, batch_size=recipe.batch_size)
    peak = 0.016 * 512 / 256
    assert lr(0) == 0.0
    assert lr(50) == pytest.approx(peak * 50 / 200, rel=1e-15)
    assert lr(200) == peak * 0.97**0  # 200 // 240 == 0
    assert lr(239) == peak and lr(240) == peak * 0.97 and lr(999) == peak * 0.97**4
    cosine = LearningRate.of(recipe.model_copy(update={"lr_decay": "cosine"}), steps_per_epoch=100, batch_size=512)
    assert cosine(500) == pytest.approx(0.5 * peak * (1 + math.cos(math.pi * 0.5)), rel=1e-15)
    assert cosine(1000) == pytest.approx(0.0, abs=1e-15)


def test_the_schedule_needs_no_framework() -> None:
    """``specdsl info --schedule`` stays as cheap as the rest of the front end."""
    code = (
        "import sys; import specdsl.training.schedule, specdsl.training.recipe; "
        "print([m for m in ('torch', 'kornia', 'sklearn', 'matplotlib') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SPECS.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
