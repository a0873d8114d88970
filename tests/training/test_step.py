"""Inside one optimizer step: gradient accumulation, bf16 autocast with channels_last, torch.compile, and the
per-stage dropout / drop-path rates set on the live model."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

import specdsl  # noqa: E402
from specdsl.training.api import TrainOptions, train  # noqa: E402
from specdsl.training.data import digits  # noqa: E402
from specdsl.training.distributed import Context  # noqa: E402
from specdsl.training.loop import Trainer  # noqa: E402
from specdsl.training.rates import apply_rates, current_rates, stage_rates  # noqa: E402
from specdsl.training.recipe import with_recipe  # noqa: E402
from specdsl.training.schedule import schedule_of  # noqa: E402

from .conftest import TRAIN_SPEC  # noqa: E402


def trainer(tmp_path: Path, options: TrainOptions | None = None, **recipe: object) -> Trainer:
    doc = with_recipe(specdsl.loads(TRAIN_SPEC).spec, recipe)
    return Trainer(specdsl.api.resolve(doc), digits(3), tmp_path, Context(), options or TrainOptions(quiet=True))


def test_accumulated_micro_batches_step_like_the_whole_batch(tmp_path: Path) -> None:
    """Two micro-batches of 8 accumulate the gradient of the 16-image batch: the same SGD step (BN in eval
    mode and no dropout, so the loss is a plain mean over images)."""
    generator = torch.Generator().manual_seed(0)
    x, targets = torch.randn(16, 3, 16, 16, generator=generator), torch.eye(10)[torch.arange(16) % 10]
    params = []
    for accumulation, chunks in ((1, [slice(0, 16)]), (2, [slice(0, 8), slice(8, 16)])):
        run = trainer(tmp_path, optimizer="sgd", momentum=0.0, weight_decay=0.0, warmup_epochs=0, lr=25.6,
                      grad_accumulation=accumulation, batch_size=64)  # fmt: skip
        run.model.eval()
        assert run.lr(0) == 25.6 * 64 / 256
        loss = run.train_step([(x[rows], targets[rows]) for rows in chunks])
        assert run.progress.step == 1
        params.append((loss, {name: p.detach().clone() for name, p in run.model.named_parameters()}))
    (whole_loss, whole), (split_loss, split) = params
    assert split_loss == pytest.approx(whole_loss, rel=1e-6)
    for name, value in whole.items():
        torch.testing.assert_close(split[name], value, rtol=1e-5, atol=1e-6, msg=name)
    initial = dict(trainer(tmp_path).model.named_parameters())
    assert any(not torch.equal(value, initial[name]) for name, value in whole.items())  # the step did move


def test_bf16_autocast_and_channels_last_train(tmp_path: Path) -> None:
    """The GPU flags on CPU: convolutions run in bfloat16 on NHWC tensors, the step stays finite."""
    run = trainer(tmp_path, TrainOptions(amp="bf16", channels_last=True, quiet=True))
    seen = []
    run.model.stem.conv.register_forward_hook(lambda module, args, out: seen.append((out.dtype, args[0])))
    stage = schedule_of(run.ir)[0]
    images, labels = torch.rand(8, 3, stage.image_size, stage.image_size), torch.arange(8)
    loss = run.train_step([run.prepare(images, labels, stage)])
    assert torch.isfinite(torch.tensor(loss))
    ((dtype, inputs),) = seen
    assert dtype == torch.bfloat16 and inputs.is_contiguous(memory_format=torch.channels_last)
    assert run.model.stem.conv.weight.dtype == torch.float32  # master weights stay float32
    assert run.model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_compiled_training_runs_an_epoch(tmp_path: Path, train_spec: str) -> None:
    """torch.compile smoke test: one epoch traced by dynamo and AOTAutograd (forward and backward, the stage's
    rates as guards). ``aot_eager`` skips inductor's C++ code generation, which takes minutes on this CPU."""
    options = TrainOptions(compile="aot_eager", threads=1, quiet=True, stop_at_epoch=1, recipe={"batch_size": 128})
    result = train(train_spec, tmp_path / "run", options)
    assert result.epochs == 1 and torch.isfinite(torch.tensor(result.metrics[0]["train_loss"]))


def test_stage_rates_come_from_the_lowering_and_change_in_place() -> None:
    """V2-S stage 1 of 4: head dropout 0.1 (Table 6's minimum), block i of N drops 0.2 * i / N."""
    ir = specdsl.load("specs/v2_s.spec")
    model = specdsl.build(ir, device="meta")
    first, last = schedule_of(ir)[0], schedule_of(ir)[-1]
    rates = stage_rates(ir, first)
    apply_rates(model, rates)
    assert model.head.dropout.p == 0.1 and rates["head.dropout"] == first.dropout
    residual = [block for block in ir.blocks if block.residual]
    assert len([name for name in rates if name.endswith(".drop_path")]) == len(residual) > 0
    for block in residual:
        expected = first.drop_path * block.global_index / len(ir.blocks)
        assert rates[f"stages.{block.stage}.{block.index}.drop_path"] == pytest.approx(expected, rel=1e-12)
    identity = id(model.head.dropout)
    apply_rates(model, stage_rates(ir, last))
    assert id(model.head.dropout) == identity and model.head.dropout.p == pytest.approx(0.3)
    assert current_rates(model, list(rates)) == stage_rates(ir, last)
