"""The built module is the IR: parameter counts, MACs, weight names and every per-block field."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import specdsl  # noqa: E402
from specdsl import weights  # noqa: E402
from specdsl.backends.torch import build  # noqa: E402
from specdsl.backends.torch.layers import PaddedConv2d, same_padding  # noqa: E402

from .helpers import SPEC_NAMES, load_ir, map_blocks  # noqa: E402


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def test_every_shipped_spec_is_tested() -> None:
    assert {"b0", "b3", "b7", "l2", "v2_b0", "v2_s", "v2_xl"} <= set(SPEC_NAMES)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_params_and_weight_names_match_the_ir(name: str) -> None:
    ir = load_ir(name)
    model = build(ir, device="meta")
    assert sum(p.numel() for p in model.parameters()) == specdsl.analyze(ir).params
    state = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    # The module's own state_dict is the canonical scheme, names, order and shapes.
    assert list(state.items()) == list(weights.canonical_shapes(ir).items())


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_macs_match_the_analysis(name: str) -> None:
    """FlopCounterMode over the real forward pass (shapes only, on meta) == the IR's own count."""
    ir = load_ir(name)
    model = build(ir, device="meta").eval()
    x = torch.zeros(1, ir.in_channels, ir.resolution, ir.resolution, device="meta")
    assert count_macs(model, x) == specdsl.analyze(ir).macs


@pytest.mark.parametrize("name", ["b0", "v2_s"])
def test_macs_match_the_analysis_on_real_tensors(name: str) -> None:
    ir = load_ir(name)
    model = build(ir).eval()
    x = torch.zeros(1, ir.in_channels, ir.resolution, ir.resolution)
    assert count_macs(model, x) == specdsl.analyze(ir).macs


ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "relu6": nn.ReLU6, "hard_swish": nn.Hardswish}


@pytest.mark.parametrize("name", ["b0", "v2_s"])
def test_each_block_translates_its_ir_fields(name: str) -> None:
    ir = load_ir(name)
    model = build(ir, device="meta")
    modules = [block for stage in model.stages for block in stage]
    assert len(modules) == len(ir.blocks)
    for block, module in zip(ir.blocks, modules, strict=True):
        mid = block.mid_channels
        assert (module.expand is not None) == (block.kind == "mbconv" and block.expand_channels is not None)
        spatial = module.spatial.conv
        assert spatial.kernel_size == (block.kernel, block.kernel)
        assert spatial.stride == (block.stride, block.stride)
        assert spatial.groups == (mid if block.kind == "mbconv" else 1)
        assert spatial.out_channels == (block.out_channels if block.kind == "conv" else mid)
        assert spatial.input_size == block.input_size
        assert (module.se is None) == (block.se_channels is None)
        if module.se is not None:
            assert (module.se.reduce.in_channels, module.se.reduce.out_channels) == (mid, block.se_channels)
        assert (module.project is None) == (block.kind == "conv")
        assert module.residual == block.residual
        assert module.drop_path == block.drop_path
        assert isinstance(module.spatial.act, ACTIVATIONS[block.activation])
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert (bn.eps, bn.momentum) == (ir.batch_norm.eps, ir.batch_norm.momentum)
    assert model.dropout.p == ir.head.dropout
    assert model.classifier.out_features == ir.head.classes


def test_options_the_shipped_specs_do_not_use() -> None:
    """Every activation, symmetric padding, no head conv, a residual switched off: all come from the IR."""
    base = load_ir("v2_b0")
    names = list(ACTIVATIONS)
    ir = map_blocks(
        base,
        lambda b: b.model_copy(
            update={"activation": names[b.global_index % 4], "residual": b.residual and b.global_index != 6}
        ),
        padding="symmetric",
        head=base.head.model_copy(update={"conv_channels": None}),
    )
    assert base.blocks[6].residual  # the switched-off residual existed
    model = build(ir, seed=3).eval()
    modules = [block for stage in model.stages for block in stage]
    for block, module in zip(ir.blocks, modules, strict=True):
        assert isinstance(module.spatial.act, ACTIVATIONS[block.activation])
        if module.se is not None:
            assert isinstance(module.se.act, ACTIVATIONS[block.activation])
    assert not modules[6].residual
    assert model.head is None and model.classifier.in_features == ir.head.in_channels
    assert all(not conv.tf_same for conv in model.modules() if isinstance(conv, PaddedConv2d))
    assert sum(p.numel() for p in model.parameters()) == specdsl.analyze(ir).params
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, ir.head.classes) and torch.isfinite(out).all()


def test_symmetric_padding_is_plain_conv_padding() -> None:
    conv = PaddedConv2d(4, 4, 5, 2, padding="symmetric", input_size=16)
    assert conv.padding == (2, 2) and not conv.tf_same
    x = torch.randn(1, 4, 16, 16)
    expected = torch.nn.functional.conv2d(x, conv.weight, None, 2, 2)
    assert torch.equal(conv(x), expected)


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 2), (4, 1), (1, 2)])
@pytest.mark.parametrize("size", [7, 8, 15, 16])
def test_same_padding_matches_tensorflow(kernel: int, stride: int, size: int) -> None:
    """TF 'SAME' as TensorFlow computes it, for the static size, another size (dynamic path) and non-square."""
    tf = pytest.importorskip("tensorflow")
    generator = torch.Generator().manual_seed(kernel * 100 + stride * 10 + size)
    conv = PaddedConv2d(3, 5, kernel, stride, padding="same", input_size=size)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
    kernel_hwio = conv.weight.detach().permute(2, 3, 1, 0).numpy()
    for height, width in [(size, size), (size + 1, size + 1), (size, size + 3)]:
        x = torch.randn(2, 3, height, width, generator=generator)
        expected = tf.nn.conv2d(x.permute(0, 2, 3, 1).numpy(), kernel_hwio, stride, "SAME").numpy()
        with torch.no_grad():
            actual = conv(x).permute(0, 2, 3, 1).numpy()
        assert actual.shape == expected.shape
        # Misplaced padding shifts whole rows: errors of the order of the outputs, not of float rounding.
        assert abs(actual - expected).max() <= 1e-5 * abs(expected).max()


def test_same_padding_is_static_where_the_ir_predicts_the_size() -> None:
    """The padding baked in for the predicted size is TensorFlow's formula, extra pixel after."""
    assert same_padding(112, 3, 2) == (0, 1)
    assert same_padding(112, 5, 2) == (1, 2)
    assert same_padding(7, 3, 2) == (1, 1)
    ir = load_ir("b0")
    model = build(ir, device="meta")
    for block, module in zip(ir.blocks, (b for stage in model.stages for b in stage), strict=True):
        conv = module.spatial.conv
        if conv.tf_same:
            pad = same_padding(block.input_size, block.kernel, block.stride)
            assert conv.static_pad == (*pad, *pad)
        else:  # stride 1, odd kernel: TF SAME is symmetric for every size
            assert block.stride == 1 and conv.padding == ((block.kernel - 1) // 2,) * 2
