"""Training behaviour: ``fit`` lowers the loss; stochastic depth and dropout act in training only, as the lowering
states; batch norm's running statistics move as the spec's momentum says, as in PyTorch."""

from __future__ import annotations

import pytest

keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402

import specdsl  # noqa: E402
from specdsl.backends.keras import build, layer_name  # noqa: E402
from specdsl.passes.lower import BatchNorm, Dropout, DropPath, lower  # noqa: E402
from tests.conftest import TINY_SPEC  # noqa: E402

from .helpers import images, logits  # noqa: E402

#: The tiny network with strong regularisation, so that its effect is visible in a few samples.
REGULARISED = TINY_SPEC + "head { dropout = 0.5 classes = 5 }\ndefaults { drop_path = 0.6 }\n"


def test_fit_lowers_the_loss() -> None:
    ir = specdsl.loads(TINY_SPEC.replace("input { resolution = 64 }", "input { resolution = 32 }"), "tiny.spec")
    model = build(ir, seed=0)
    x = images(16, 32, seed=1)
    y = np.random.default_rng(2).integers(0, ir.head.classes, 16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = model.fit(x, y, batch_size=8, epochs=8, shuffle=False, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]
    assert np.isfinite(logits(model, x)).all()


def outputs_around(model: keras.Model, op_name: str) -> keras.Model:
    """A model giving an op's input and output (both from one pass)."""
    layer = model.get_layer(layer_name(op_name))
    return keras.Model(model.input, [layer.input, layer.output])


def test_stochastic_depth_drops_whole_samples_in_training_only() -> None:
    ir = specdsl.loads(REGULARISED, "tiny.spec")
    drop = [op for op in lower(ir).ops if isinstance(op, DropPath)][-1]
    assert drop.rate == pytest.approx(0.6 * 2 / 3)  # the lowering's rate: drop_path * i / N
    probe = outputs_around(build(ir, seed=3), drop.name)
    x = images(32, ir.resolution, seed=4)
    before, after = (keras.ops.convert_to_numpy(t) for t in probe(x, training=True))
    kept = np.array([np.any(sample) for sample in after])
    assert 0 < kept.sum() < len(kept)  # some samples dropped, some kept
    assert np.allclose(after[kept], before[kept] / (1 - drop.rate), rtol=1e-6)  # survivors rescaled
    assert not after[~kept].any()  # the dropped ones entirely
    before, after = (keras.ops.convert_to_numpy(t) for t in probe(x, training=False))
    assert np.array_equal(before, after)


def test_dropout_drops_elements_in_training_only() -> None:
    ir = specdsl.loads(REGULARISED, "tiny.spec")
    drop = next(op for op in lower(ir).ops if isinstance(op, Dropout))
    model = build(ir, seed=5)
    probe = outputs_around(model, drop.name)
    x = images(8, ir.resolution, seed=6)
    before, after = (keras.ops.convert_to_numpy(t) for t in probe(x, training=True))
    zeros = after == 0
    assert 0.3 < zeros.mean() < 0.7  # rate 0.5, per element
    assert np.allclose(after[~zeros], before[~zeros] / (1 - drop.rate), rtol=1e-6)
    before, after = (keras.ops.convert_to_numpy(t) for t in probe(x, training=False))
    assert np.array_equal(before, after)
    assert not np.array_equal(logits(model, x), keras.ops.convert_to_numpy(model(x, training=True)))
    assert np.array_equal(logits(model, x), logits(model, x))  # inference is deterministic


def test_batch_norm_statistics_move_like_pytorchs() -> None:
    """The lowering's momentum is PyTorch's; Keras's is 1 - it. One training pass from the same weights moves the
    running mean alike. (The running variance differs by n / (n - 1): PyTorch averages the unbiased batch
    variance, Keras the biased one; docs/weights.md.)"""
    torch = pytest.importorskip("torch")
    ir = specdsl.loads(TINY_SPEC, "tiny.spec")
    stem = next(op for op in lower(ir).ops if isinstance(op, BatchNorm))
    model = build(ir, seed=7)
    reference = specdsl.build(ir, backend="torch", weights=specdsl.weights.state_of(model)).train()
    x = images(4, ir.resolution, seed=8)
    model(x, training=True)
    with torch.no_grad():
        reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    moved = keras.ops.convert_to_numpy(model.get_layer(layer_name(stem.name)).moving_mean)
    assert np.abs(moved).max() > 1e-4  # it moved: over 1000 times the atol below
    assert np.allclose(moved, reference.get_submodule(stem.name).running_mean.numpy(), rtol=1e-5, atol=1e-7)
