"""The Keras model is the lowering: one layer per op under the op's name, each with exactly the op's numbers.

Also: activations as the oracle defines them, the preprocessing option and its default, seeded
init, and clear errors for what the backend does not do.
"""

from __future__ import annotations

import dataclasses
import random
import typing

import pytest

keras = pytest.importorskip("keras")

import numpy as np  # noqa: E402

import specdsl  # noqa: E402
from specdsl import reference, weights  # noqa: E402
from specdsl.backends import UnsupportedOption, load_backend  # noqa: E402
from specdsl.backends.keras import build, emit, layer_name, op_name, state_of  # noqa: E402
from specdsl.backends.keras.model import ACTIVATIONS, TRANSLATIONS, nhwc  # noqa: E402
from specdsl.passes.lower import Function, Op, lower  # noqa: E402
from tests.conftest import TINY_SPEC  # noqa: E402
from tests.published import PARAMS  # noqa: E402

from .helpers import load_ir, logits, max_diff  # noqa: E402

#: Layers that are not ops: the input, a conv's explicit padding, the preprocessing option.
NOT_OPS = (keras.layers.InputLayer, keras.layers.ZeroPadding2D, keras.layers.Normalization)


@pytest.mark.parametrize("name", ["b0", "v2_b0"])
def test_each_op_is_one_layer_with_its_lowered_fields(name: str) -> None:
    ir = load_ir(name)
    net = lower(ir)
    model = build(ir)
    ops = {layer_name(op.name): op for op in net.ops}
    assert [op_name(layer) for layer in ops] == [op.name for op in net.ops]  # the mapping is reversible
    assert len(ops) == len(net.ops)
    pads = {layer.name: layer.padding for layer in model.layers if isinstance(layer, keras.layers.ZeroPadding2D)}
    for layer in model.layers:
        if isinstance(layer, NOT_OPS):
            assert layer.name not in ops
            continue
        op = ops.pop(layer.name)
        assert tuple(layer.output.shape[1:]) == nhwc(op.out_shape)
        match op.op:
            case "conv":
                assert isinstance(layer, keras.layers.DepthwiseConv2D if op.depthwise else keras.layers.Conv2D)
                assert layer.kernel_size == (op.kernel,) * 2 and layer.strides == (op.stride,) * 2
                assert layer.use_bias == op.bias
                if not op.depthwise:
                    assert (layer.filters, layer.groups) == (op.out_channels, op.groups)
                if layer.padding == "same":  # the lowering's pads are stride-1 "same" pads
                    assert op.same_size and f"{layer.name}_pad" not in pads
                else:
                    assert layer.padding == "valid"
                    pad = pads.pop(f"{layer.name}_pad") if any(op.pads) else ((0, 0), (0, 0))
                    assert pad == ((op.pads[0], op.pads[1]), (op.pads[2], op.pads[3]))
            case "batch_norm":  # Keras weighs the running value by momentum, PyTorch (the lowering) the batch value
                assert (layer.momentum, layer.epsilon) == (pytest.approx(1 - op.momentum), op.eps)
            case "activation":
                assert layer.activation is keras.activations.get(ACTIVATIONS[op.function])
            case "drop_path":
                assert isinstance(layer, keras.layers.Dropout) and layer.noise_shape == (None, 1, 1, 1)
                assert layer.rate == op.rate
            case "dropout":
                assert isinstance(layer, keras.layers.Dropout) and layer.noise_shape is None
                assert layer.rate == op.rate
            case "linear":
                assert (layer.units, layer.use_bias) == (op.out_features, op.bias)
    assert not ops and not pads  # every op has its layer, every padding layer its conv
    assert any(layer.padding == "same" for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == PARAMS[name]


def test_every_op_kind_has_a_translation_and_an_unknown_one_is_named() -> None:
    kinds = {typing.get_type_hints(cls)["op"].__args__[0] for cls in typing.get_args(typing.get_args(Op)[0])}
    assert set(TRANSLATIONS) == kinds
    assert set(ACTIVATIONS) == set(typing.get_args(Function))
    from specdsl.backends.keras.model import _translate

    op = dataclasses.replace(lower(load_ir("v2_b0")).ops[0], op="strange")
    with pytest.raises(NotImplementedError, match="op kind 'strange'"):
        _translate(op, [keras.Input((224, 224, 3))], 0)


@pytest.mark.parametrize("function", typing.get_args(Function))
def test_activations_are_the_oracles(function: str) -> None:
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6 and hard_silu x * that (Keras 2's hard_sigmoid was not)."""
    x = np.linspace(-8.0, 8.0, 1601, dtype=np.float32)
    layer = keras.layers.Activation(ACTIVATIONS[function])
    ours = keras.ops.convert_to_numpy(layer(x))
    assert max_diff(ours, reference.FUNCTIONS[function](x.astype(np.float64))) <= 1e-6


def test_preprocessing_is_off_by_default_and_is_the_specs_normalisation() -> None:
    text = TINY_SPEC.replace(
        "input { resolution = 64 }", "input { resolution = 64 mean = [0.1, 0.5, 0.9] std = [0.2, 0.3, 0.4] }"
    )
    ir = specdsl.loads(text, "tiny.spec")
    assert ir.normalization.mean == (0.1, 0.5, 0.9)
    plain = build(ir, seed=1)
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in plain.layers)
    with_preprocessing = build(ir, seed=1, include_preprocessing=True)
    norm = ir.normalization
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    normalized = (pixels / 255.0 - np.asarray(norm.mean)) / np.asarray(norm.std)
    preprocess = keras.Model(with_preprocessing.input, with_preprocessing.get_layer("preprocessing").output)
    assert max_diff(keras.ops.convert_to_numpy(preprocess(pixels)), normalized) <= 1e-5
    assert max_diff(logits(with_preprocessing, pixels), logits(plain, normalized.astype(np.float32))) <= 1e-5


def test_resolution_rebuilds_for_another_input_size() -> None:
    ir = load_ir("b0")
    model = build(ir, resolution=96)
    assert tuple(model.input.shape) == (None, 96, 96, 3)
    assert model.get_layer("stem-conv_pad").padding == ((0, 1), (0, 1))  # TF SAME at 96, from the lowering


def test_init_is_seeded_reproducible_and_leaves_global_rngs_alone() -> None:
    ir = specdsl.loads(TINY_SPEC, "tiny.spec")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    first, second, other = (state_of(build(ir, seed=seed)) for seed in (7, 7, 8))
    assert random.getstate() == python_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert not np.array_equal(first["stem.conv.weight"], other["stem.conv.weight"])


def test_reference_init_statistics() -> None:
    """As keras.applications and the PyTorch backend: conv N(0, sqrt(2 / fan_out)), dense U(+-1/sqrt(out))."""
    state = state_of(build(load_ir("b0"), seed=0))
    head = state["head.conv.weight"]  # 1x1, 320 -> 1280
    assert head.std() == pytest.approx(np.sqrt(2 / 1280), rel=0.01)
    depthwise = state["stages.5.3.spatial.conv.weight"]  # 5x5 depthwise: fan_out 25
    assert depthwise.std() == pytest.approx(np.sqrt(2 / 25), rel=0.02)
    bound = 1 / np.sqrt(1000)
    assert bound * 0.99 < np.abs(state["classifier.weight"]).max() <= bound
    assert not state["classifier.bias"].any() and not state["stages.1.0.se.reduce.bias"].any()
    assert np.array_equal(state["stem.bn.running_var"], np.ones(32))


def test_errors_name_what_is_wrong(tmp_path) -> None:
    ir = specdsl.loads(TINY_SPEC, "tiny.spec")
    with pytest.raises(UnsupportedOption, match=r"the keras backend's build\(\) has no option deploy$"):
        build(ir, deploy=True)  # no deploy mode (BN folding): refused as every backend refuses an option it lacks
    with pytest.raises(ValueError, match="exports saved_model, tflite, not 'pt2'"):
        emit(ir, tmp_path, export="pt2")
    with pytest.raises(weights.WeightsError, match="do not fit efficientnet-b0"):
        build(load_ir("b0"), weights=state_of(build(ir)))
    assert load_backend("keras").build is build
