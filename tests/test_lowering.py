"""The lowering: one explicit layer list per spec, which the analysis, the weights and every backend read.

Framework-free: these tests need numpy only (tensorflow where it checks TF SAME padding).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import specdsl
from specdsl import reference
from specdsl.passes.analysis import op_macs, op_params
from specdsl.passes.lower import (
    Add,
    BatchNorm,
    CondConv,
    Conv,
    DropPath,
    LoweredNetwork,
    Mul,
    check,
    consumers,
    lower,
    same_pads,
    split_channels,
)
from tests.conftest import SPECS, TINY_SPEC
from tests.published import MACS, PARAMS
from tests.strategies import EVERY_FAMILY_FEATURE

SPEC_NAMES = sorted(path.stem for path in SPECS.glob("*.spec"))


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_lowering_counts_the_published_network(name: str) -> None:
    ir = specdsl.load(SPECS / f"{name}.spec")
    net = check(lower(ir))  # fully validated: field types, forward order, unique names, BN folds
    report = specdsl.analyze(ir)
    params, macs = sum(op_params(op) for op in net.ops), sum(op_macs(op) for op in net.ops)
    assert params == report.params == PARAMS.get(name, report.params)  # unpublished specs: no published count
    assert macs == report.macs
    if name in MACS:
        assert abs(macs - MACS[name]) / MACS[name] < 5e-4
    # Canonical tensors are the weight-bearing ops' tensors; trainable ones add up to the parameters.
    tensors = net.tensors()
    trainable = {k: v for k, v in tensors.items() if not k.endswith(("running_mean", "running_var"))}
    assert sum(math.prod(shape) for shape in trainable.values()) == params


@pytest.mark.parametrize("name", ["b0", "v2_s"])
def test_residuals_and_se_are_ops(name: str) -> None:
    ir = specdsl.load(SPECS / f"{name}.spec")
    net = lower(ir)
    adds = [op for op in net.ops if isinstance(op, Add)]
    assert len(adds) == sum(block.residual for block in ir.blocks)
    readers = consumers(net)
    for add in adds:
        identity, branch = add.inputs
        prefix = add.name.removesuffix(".add")
        assert isinstance(net.ops[[op.name for op in net.ops].index(branch)], DropPath)
        assert branch == f"{prefix}.drop_path" and prefix not in identity  # the block's input
        assert add.name in readers[identity]
    scales = [op for op in net.ops if isinstance(op, Mul)]
    assert len(scales) == sum(block.se_channels is not None for block in ir.blocks)
    assert all(op.inputs[1].endswith(".se.gate") for op in scales)


def test_drop_path_rates_and_bn_convention_are_the_irs() -> None:
    ir = specdsl.load(SPECS / "b0.spec")
    net = lower(ir)
    rates = {op.block: op.rate for op in net.ops if isinstance(op, DropPath)}
    assert rates == {block.global_index: block.drop_path for block in ir.blocks if block.residual}
    norms = [op for op in net.ops if isinstance(op, BatchNorm)]
    assert {(op.eps, op.momentum) for op in norms} == {(1e-3, 0.01)}  # PyTorch convention
    assert all(op.folds_into == op.name.removesuffix(".bn") + ".conv" for op in norms)


def test_json_round_trip() -> None:
    net = lower(specdsl.load(SPECS / "v2_s.spec"))
    text = json.dumps(net.to_json())
    again = LoweredNetwork.from_json(text)
    assert again == check(net) == net
    assert json.loads(text)["ops"][0] == {
        "name": "stem.conv",
        "inputs": ["input"],
        "out_shape": [24, 192, 192],
        "block": None,
        "op": "conv",
        "in_shape": [3, 384, 384],
        "in_channels": 3,
        "out_channels": 24,
        "kernel": 3,
        "stride": 2,
        "groups": 1,
        "bias": False,
        "pads": [0, 1, 0, 1],
        "dynamic_padding": True,
    }


def test_normalization_defaults_and_overrides() -> None:
    assert lower(specdsl.loads(TINY_SPEC)).normalization.mean == (0.485, 0.456, 0.406)
    custom = TINY_SPEC.replace("input { resolution = 64 }", "input { resolution = 64 mean = [0.5, 0.5, 0.5] }")
    assert lower(specdsl.loads(custom)).normalization.mean == (0.5, 0.5, 0.5)
    gray = TINY_SPEC.replace("input { resolution = 64 }", "input { resolution = 64 channels = 1 }")
    assert lower(specdsl.loads(gray)).normalization.std == (0.5,)
    with pytest.raises(specdsl.SpecError, match="mean: 2 values for 3 input channels"):
        specdsl.loads(TINY_SPEC.replace("input { resolution = 64 }", "input { resolution = 64 mean = [0.5, 0.5] }"))


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 2), (4, 1), (1, 2), (7, 2)])
@pytest.mark.parametrize("size", [7, 8, 15, 16, 17])
def test_same_pads_are_tensorflows(kernel: int, stride: int, size: int) -> None:
    """The reference conv with the lowering's pads computes TensorFlow's SAME convolution."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(kernel * 100 + stride * 10 + size)
    x, w = rng.standard_normal((2, 3, size, size)), rng.standard_normal((5, 3, kernel, kernel))
    pads = (*same_pads(size, kernel, stride), *same_pads(size, kernel, stride))
    ours = reference.conv2d(x, w, None, stride, 1, pads)
    theirs = tf.nn.conv2d(x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), stride, "SAME").numpy()
    np.testing.assert_allclose(ours.transpose(0, 2, 3, 1), theirs, rtol=1e-10, atol=1e-10)


def test_symmetric_padding_and_even_kernels() -> None:
    symmetric = specdsl.loads(TINY_SPEC.replace('name = "tiny"', 'name = "tiny"\ndefaults { padding = symmetric }'))
    convs = [op for op in lower(symmetric).ops if isinstance(op, Conv)]
    assert all(op.pads == ((op.kernel - 1) // 2,) * 4 and not op.dynamic_padding for op in convs)
    same = [op for op in lower(specdsl.loads(TINY_SPEC)).ops if isinstance(op, Conv)]
    assert [op.dynamic_padding for op in same] == [op.stride > 1 for op in same]


def test_lowering_and_weights_import_no_framework() -> None:
    code = (
        "import sys, specdsl, specdsl.weights, specdsl.reference\n"
        "net = specdsl.lower(specdsl.load('b0'))\n"
        "specdsl.weights.canonical_shapes(specdsl.load('v2_s'))\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'keras', 'onnx', 'jax') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_no_op_name_is_a_dot_prefix_of_another() -> None:
    """Backends place modules in a tree by name: `a.b` next to `a.b.c` would make one op the other's parent."""
    net = lower(specdsl.loads(TINY_SPEC))

    def rename(name: str) -> str:  # "stem.bn" becomes "stem.conv.bn", under "stem.conv"
        return "stem.conv.bn" if name == "stem.bn" else name

    ops = [dataclasses.replace(op, name=rename(op.name), inputs=tuple(map(rename, op.inputs))) for op in net.ops]
    broken = dataclasses.replace(net, ops=ops)
    with pytest.raises(ValueError, match=r"'stem.conv' is a prefix of op name 'stem.conv.bn'"):
        check(broken)
    check(lower(specdsl.loads(EVERY_FAMILY_FEATURE)))  # split convs name their groups conv.0, conv.1, ...


def test_split_convs_are_slices_convs_and_a_concat() -> None:
    """MixNet-S stage 5's first block: 720 expanded channels, kernels 3..11; a remainder goes to the first group."""
    ir = specdsl.load(SPECS / "mixnet_s.spec")
    block = ir.stages[5].blocks[0]
    assert split_channels(block.mid_channels, 5) == [144] * 5 and split_channels(10, 3) == [4, 3, 3]
    net = lower(ir)
    ops = {op.name: op for op in net.ops}
    prefix = "stages.5.0.spatial"
    slices = [ops[f"{prefix}.split.{i}"] for i in range(5)]
    assert [(op.start, op.stop) for op in slices] == [(144 * i, 144 * (i + 1)) for i in range(5)]
    convs = [ops[f"{prefix}.conv.{i}"] for i in range(5)]
    assert [(op.kernel, op.groups, op.stride, op.inputs) for op in convs] == [
        (k, 144, 2, (f"{prefix}.split.{i}",)) for i, k in enumerate((3, 5, 7, 9, 11))
    ]
    assert ops[f"{prefix}.concat"].inputs == tuple(op.name for op in convs)
    assert ops[f"{prefix}.bn"].folds_into is None and f"{prefix}.conv" not in ops
    pointwise = ops["stages.1.0.expand.conv.1"]  # a1.1: two plain 1x1 convs over halves of the input
    assert (pointwise.in_channels, pointwise.out_channels, pointwise.groups) == (8, 48, 1)


def test_cond_conv_with_one_hot_routing_is_that_experts_conv() -> None:
    rng = np.random.default_rng(5)
    ir = specdsl.load(SPECS / "cc_b0_4e.spec")
    op = next(op for op in lower(ir).ops if isinstance(op, CondConv) and op.groups > 1)
    x = rng.standard_normal((2, *op.in_shape))
    weight = rng.standard_normal((op.experts, *op.expert_shape))
    routing = np.eye(op.experts)[[1, 3]]  # sample 0 uses expert 1, sample 1 expert 3
    ours = reference._evaluate(op, [x, routing], {f"{op.name}.weight": weight})
    for sample, expert in enumerate((1, 3)):
        plain = reference.conv2d(x[sample : sample + 1], weight[expert], None, op.stride, op.groups, op.pads)
        np.testing.assert_allclose(ours[sample : sample + 1], plain, rtol=1e-12, atol=1e-12)
    mixed = reference._evaluate(op, [x[:1], np.full((1, op.experts), 0.5)], {f"{op.name}.weight": weight})
    expected = reference.conv2d(x[:1], 0.5 * weight.sum(0), None, op.stride, op.groups, op.pads)
    np.testing.assert_allclose(mixed, expected, rtol=1e-10, atol=1e-10)
    assert op_macs(op) == math.prod(op.expert_shape) * (op.out_shape[1] * op.out_shape[2] + op.experts)


def test_edgetpu_blocks_stride_on_the_projection() -> None:
    """tensorflow/tpu MBConvBlockWithoutDepthwise: k x k expansion at stride 1, 1x1 projection at the stride."""
    ops = {op.name: op for op in lower(specdsl.load(SPECS / "es.spec")).ops}
    spatial, project = ops["stages.1.0.spatial.conv"], ops["stages.1.0.project.conv"]
    assert (spatial.kernel, spatial.stride, spatial.out_shape[1:]) == (3, 1, (112, 112))
    assert (project.kernel, project.stride, project.out_shape[1:]) == (1, 2, (56, 56))


def test_mobilenetv3_head_pools_first() -> None:
    net = lower(specdsl.load(SPECS / "mobilenetv3_large_100.spec"))
    names = [op.name for op in net.ops]
    head = names[names.index("head.pool") :]
    assert head == ["head.pool", "head.conv", "head.act", "head.flatten", "head.dropout", "classifier"]
    ops = {op.name: op for op in net.ops}
    assert ops["head.conv"].bias and ops["head.conv"].in_shape == (960, 1, 1) and "head.bn" not in ops
    assert net.features == names[names.index("head.pool") - 1]  # the last block's output
    assert ops["stages.2.0.se.gate"].function == "hard_sigmoid" and ops["stages.2.0.se.act"].function == "relu"
