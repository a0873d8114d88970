"""The built module is the lowering: parameter counts, MACs, weight names and every per-op field."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import specdsl  # noqa: E402
from specdsl import weights  # noqa: E402
from specdsl.backends.torch import (  # noqa: E402
    build,
    layers,
    network_json,
)
from specdsl.passes.lower import lower, same_pads  # noqa: E402

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


def module_at(model: nn.Module, name: str) -> nn.Module | None:
    return dict(model.named_modules()).get(name)


@pytest.mark.parametrize("name", ["b0", "v2_s", "b3", "mixnet_s", "cc_b0_4e", "mobilenetv3_large_100"])
def test_each_op_translates_its_lowered_fields(name: str) -> None:
    """Every op of the lowering is one module at the op's name, with exactly the op's numbers."""
    ir = load_ir(name)
    net = lower(ir)
    model = build(ir, device="meta")
    for op in net.ops:
        module = module_at(model, op.name)
        assert module is not None, op.name
        if op.op == "conv":
            assert isinstance(module, layers.Conv)
            assert (module.in_channels, module.out_channels, module.groups) == (
                op.in_channels,
                op.out_channels,
                op.groups,
            )
            assert module.kernel_size == (op.kernel,) * 2 and module.stride == (op.stride,) * 2
            assert (module.bias is not None) == op.bias and module.dynamic_padding == op.dynamic_padding
            top, bottom, left, right = op.pads
            assert module.static_pad in ((left, right, top, bottom), (0, 0, 0, 0))
            assert module.padding == ((top, left) if module.static_pad == (0, 0, 0, 0) else (0, 0))
        elif op.op == "batch_norm":
            assert (module.num_features, module.eps, module.momentum) == (op.channels, op.eps, op.momentum)
        elif op.op == "activation":
            assert type(module) is layers.ACTIVATIONS[op.function]
        elif op.op == "drop_path":
            assert module.rate == op.rate
        elif op.op == "dropout":
            assert module.p == op.rate
        elif op.op == "linear":
            assert (module.in_features, module.out_features) == (op.in_features, op.out_features)
        elif op.op == "cond_conv":
            assert isinstance(module, layers.CondConv) and module.weight.shape == (op.experts, *op.expert_shape)
            assert (module.stride, module.groups, module.dynamic_padding) == (op.stride, op.groups, op.dynamic_padding)
        elif op.op == "slice":
            assert (module.start, module.stop) == (op.start, op.stop)
        elif op.op == "concat":
            assert isinstance(module, layers.Concat)
    assert len([m for m in model.modules() if not m._modules]) == len(net.ops)  # nothing the lowering lacks


def test_options_the_shipped_specs_do_not_use() -> None:
    """Every activation, symmetric padding, no head conv, a residual switched off: all come from the IR."""
    base = load_ir("v2_b0")
    names = ["silu", "relu", "relu6", "hard_swish"]
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
    for block in ir.blocks:
        prefix = f"stages.{block.stage}.{block.index}"
        expected = layers.ACTIVATIONS[block.activation]
        assert type(module_at(model, f"{prefix}.spatial.act")) is expected
        if block.se_channels is not None:
            assert type(module_at(model, f"{prefix}.se.act")) is expected
            assert type(module_at(model, f"{prefix}.se.gate")) is nn.Sigmoid
        assert (module_at(model, f"{prefix}.add") is not None) == block.residual
    assert module_at(model, "stages.3.0.add") is None  # global block 6
    assert module_at(model, "head.conv") is None and model.classifier.in_features == ir.head.in_channels
    assert all(not conv.dynamic_padding for conv in model.modules() if isinstance(conv, layers.Conv))
    assert sum(p.numel() for p in model.parameters()) == specdsl.analyze(ir).params
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, ir.head.classes) and torch.isfinite(out).all()


def conv_op(kernel: int, stride: int, size: int, padding: str) -> dict:
    """The stem conv op of a one-block spec with this kernel, stride and padding, lowered at ``size``."""
    text = (
        f'name = "c"\ndialect = timm\ninput {{ resolution = {size} }}\n'
        f"stem {{ channels = 5 kernel = {kernel} stride = {stride} }}\n"
        f"stages {{\n    ds_r1_k3_s1_c8\n}}\ndefaults {{ padding = {padding} }}\n"
    )
    return network_json(specdsl.loads(text))["ops"][0]


def test_symmetric_padding_is_plain_conv_padding() -> None:
    conv = layers.Conv(conv_op(5, 2, 16, "symmetric"))
    assert conv.padding == (2, 2) and conv.static_pad == (0, 0, 0, 0) and not conv.dynamic_padding
    x = torch.randn(1, 3, 16, 16)
    expected = torch.nn.functional.conv2d(x, conv.weight, None, 2, 2)
    assert torch.equal(conv(x), expected)


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 2), (1, 2)])
@pytest.mark.parametrize("size", [8, 9, 15, 16])
def test_same_padding_matches_tensorflow(kernel: int, stride: int, size: int) -> None:
    """TF 'SAME' as TensorFlow computes it: at the lowered size (static pads), another size (recomputed, dynamic
    path) and non-square."""
    tf = pytest.importorskip("tensorflow")
    generator = torch.Generator().manual_seed(kernel * 100 + stride * 10 + size)
    conv = layers.Conv(conv_op(kernel, stride, size, "same"))
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


def test_runtime_same_padding_is_the_lowerings() -> None:
    """The torch module's own TF SAME (for sizes it was not lowered at) is the lowering's rule."""
    for size in range(1, 40):
        for kernel in (1, 2, 3, 4, 5, 7):
            for stride in (1, 2, 3):
                assert layers.same_padding(size, kernel, stride) == same_pads(size, kernel, stride)
