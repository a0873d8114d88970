"""PyTorch backbones (issue #20): taps equal the numpy oracle's, efficientnet-pytorch's endpoints and timm's
feature_info; the emitted standalone module returns the same maps bit for bit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

torch = pytest.importorskip("torch")

import specdsl  # noqa: E402
from specdsl import reference, weights  # noqa: E402
from specdsl.api import at_resolution  # noqa: E402
from specdsl.backends.torch import emit  # noqa: E402
from specdsl.errors import SpecError  # noqa: E402
from specdsl.interop import efficientnet_pytorch  # noqa: E402
from specdsl.ir import ModelIR  # noqa: E402
from specdsl.passes.lower import lower  # noqa: E402
from tests.strategies import family_network, family_spec_text, network, spec_text  # noqa: E402
from tests.torch.helpers import (  # noqa: E402
    calibrate_batch_norm,
    flush_denormals,  # noqa: F401
    images,
    load_ir,
    randomize_batch_norm,
    reference_init,
)

from .helpers import (  # noqa: E402
    AT_OTHER,
    OTHER,
    REPRESENTATIVE,
    SMALL,
    TOLERANCE,
    at_another_size,
    oracle_taps,
    relative_error,
    shipped,
)

# timm's published feature_info for features_only=True (default feature_location, out_indices (0..4)): the output
# of the last block before each stride change (EfficientNetBuilder.__call__, extract_features, in
# huggingface/pytorch-image-models timm/models/_efficientnet_builder.py), channels from the arch_defs of
# _gen_efficientnet, _gen_efficientnetv2_s, _gen_mixnet_s (timm/models/efficientnet.py) and _gen_mobilenet_v3
# (timm/models/mobilenetv3.py; its last stage is the 960-channel 'cn_r1_k1_s1_c960' ConvBnAct).
TIMM_FEATURE_INFO = {
    "b0": ([16, 24, 40, 112, 320], [2, 4, 8, 16, 32]),  # efficientnet_b0
    "v2_s": ([24, 48, 64, 160, 256], [2, 4, 8, 16, 32]),  # efficientnetv2_s / tf_efficientnetv2_s
    "mixnet_s": ([16, 24, 40, 120, 200], [2, 4, 8, 16, 32]),  # mixnet_s
    "mobilenetv3_large_100": ([16, 24, 40, 112, 960], [2, 4, 8, 16, 32]),  # mobilenetv3_large_100
}


def torch_taps(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.double().numpy() for t in model.eval()(torch.as_tensor(x, dtype=torch.float32))]


@pytest.mark.parametrize("name", sorted(TIMM_FEATURE_INFO))
def test_feature_info_is_timms(name: str) -> None:
    model = specdsl.build(load_ir(name), features="strides", device="meta")
    channels, reductions = TIMM_FEATURE_INFO[name]
    assert model.feature_info.channels() == channels
    assert model.feature_info.reduction() == reductions
    assert model.feature_info.module_name() == [t.name for t in lower(load_ir(name), features="strides").taps]


@pytest.mark.parametrize("name", REPRESENTATIVE)
@pytest.mark.parametrize("features", ["strides", "expansion"])
def test_taps_equal_the_oracle_at_the_specs_and_another_resolution(name: str, features: str) -> None:
    ir = shipped(name)[0]
    sizes = (ir.resolution, OTHER) if features == "strides" and name in AT_OTHER else (ir.resolution,)
    for size in sizes:  # weights calibrated at each size keep activations O(1) there
        state = shipped(name, size)[1]
        model = specdsl.build(ir, weights=state, features=features)  # lowered at SMALL: OTHER takes dynamic pads
        assert not any(key.startswith(("classifier", "head.")) for key in model.state_dict())  # no head built
        x, expected = oracle_taps(name, features, size)
        got = torch_taps(model, x)
        assert [g.shape for g in got] == [e.shape for e in expected]
        for g, e in zip(got, expected, strict=True):
            assert relative_error(g, e) <= TOLERANCE
    assert np.abs(expected[-1][0] - expected[-1][1]).max() > 100 * TOLERANCE * np.abs(expected[-1]).max()


def random_case(ir: ModelIR, seed: int) -> None:
    """A random spec's backbone against the oracle, with weights made by the torch model (init + calibrated BN)."""
    full = specdsl.build(ir, seed=seed)
    reference_init(full, seed + 1)
    calibrate_batch_norm(full, images(4, ir.resolution, seed + 2, ir.in_channels))
    state = weights.state_of(full)
    x = images(2, ir.resolution, seed + 3, ir.in_channels).double().numpy()
    for features in ("strides", "expansion"):
        expected = reference.run(lower(ir, features=features), state, x)
        got = torch_taps(specdsl.build(ir, weights=state, features=features), x)
        for g, e in zip(got, expected, strict=True):
            assert relative_error(g, e) <= TOLERANCE
    x, expected = at_another_size(ir, state, seed + 4)  # the module built at the spec's size pads at run time
    got = torch_taps(specdsl.build(ir, weights=state, features="strides"), x)
    for g, e in zip(got, expected, strict=True):
        assert relative_error(g, e) <= TOLERANCE


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=network)
def test_taps_equal_the_oracle_on_random_networks(net: dict) -> None:
    random_case(specdsl.loads(spec_text(net), "prop.spec"), seed=60)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_taps_equal_the_oracle_on_random_family_networks(net: dict) -> None:
    random_case(specdsl.loads(family_spec_text(net), "family.spec"), seed=70)


@pytest.mark.parametrize("variant", ["b0", "b3"])
def test_strides_taps_equal_efficientnet_pytorch_endpoints(variant: str) -> None:
    ep = pytest.importorskip("efficientnet_pytorch")
    ir = load_ir(variant)
    ref = ep.EfficientNet.from_name(f"efficientnet-{variant}")
    ref.set_swish(memory_efficient=False)
    reference_init(ref, 5)
    randomize_batch_norm(ref, 6)  # BN statistics randomised
    ref.eval()
    x = images(2, ir.resolution, seed=7)
    with torch.no_grad():
        endpoints = ref.extract_endpoints(x)
    state = efficientnet_pytorch.import_weights(ref, ir)  # the full network's weights: the head's are ignored
    model = specdsl.build(ir, weights=state, features="strides").eval()
    with torch.no_grad():
        taps = model(x)
    assert len(taps) == 5
    for index, tap in enumerate(taps, 1):
        expected = endpoints[f"reduction_{index}"]
        assert tap.shape == expected.shape
        assert (tap - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert (endpoints["reduction_5"][0] - endpoints["reduction_5"][1]).abs().max() > 1e-3


def test_a_backbone_reads_the_full_weights_file_and_the_standalone_module_is_bit_identical(tmp_path: Path) -> None:
    ir, state = shipped("b0")
    paths = emit(ir, tmp_path, weights=state, features="strides", out_indices=[1, 2, 4])
    py = next(p for p in paths if p.suffix == ".py")
    safetensors = next(p for p in paths if p.suffix == ".safetensors")
    assert "classifier.weight" in weights.load(safetensors, ir)  # the weights file is the full network's
    spec = importlib.util.spec_from_file_location("standalone_backbone", py)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        standalone = module.load_model()
    finally:
        del sys.modules[spec.name]
    built = specdsl.build(ir, weights=safetensors, features="strides", out_indices=[1, 2, 4]).eval()
    assert standalone.feature_info == built.feature_info and built.feature_info.reduction() == [4, 8, 32]
    x = torch.as_tensor(images(2, ir.resolution, seed=9))
    with torch.no_grad():
        for a, b in zip(standalone(x), built(x), strict=True):
            assert torch.equal(a, b)
        folded = specdsl.build(ir, weights=safetensors, features="strides", out_indices=[1, 2, 4], deploy=True)(x)
        for a, b in zip(folded, built(x), strict=True):
            assert relative_error(a.double().numpy(), b.double().numpy()) <= TOLERANCE


def test_a_backbone_needs_the_whole_networks_weights() -> None:
    ir, state = shipped("b0")
    headless = {k: v for k, v in state.items() if not k.startswith("classifier")}
    with pytest.raises(weights.WeightsError, match="classifier"):
        specdsl.build(ir, weights=headless, features="strides")


def test_build_refuses_a_bad_selection_with_one_located_error() -> None:
    with pytest.raises(SpecError, match=r"features: 'stages\.7' is not an op or stage"):
        specdsl.build(at_resolution(load_ir("b0"), 64), features="stages.7")


def check_backbone_cost(ir: ModelIR, features: object) -> None:
    """Backbone params and MACs from the analysis (the public API, which is what `info --features` shows) equal the
    torch backbone's parameter count and FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    cost = specdsl.analyze(ir, features=features)
    model = specdsl.build(ir, seed=1, features=features).eval()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == cost.params
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, ir.in_channels, ir.resolution, ir.resolution))
    assert counter.get_total_flops() // 2 == cost.macs


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_backbone_params_and_macs_are_the_torch_modules(name: str) -> None:
    ir = at_resolution(load_ir(name), SMALL)  # no weights needed: the reference init
    check_backbone_cost(ir, "expansion" if name == "mixnet_s" else "strides")
    assert backbone_params(ir, "strides") < specdsl.analyze(ir).params


def backbone_params(ir: ModelIR, features: object) -> int:
    return specdsl.analyze(ir, features=features).params


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_backbone_cost_on_random_family_networks(net: dict) -> None:
    check_backbone_cost(specdsl.loads(family_spec_text(net), "family.spec"), "strides")


def test_memory_efficient_backbone_keeps_every_tap_and_the_same_gradients() -> None:
    """Checkpointed blocks must not release a tap's value that no later op reads."""
    ir = at_resolution(load_ir("b0"), SMALL)
    lean = specdsl.build(ir, seed=1, features="strides", memory_efficient=True).train()
    plain = specdsl.build(ir, seed=1, features="strides").train()
    x = images(2, SMALL, seed=4)
    outputs = []
    for model in (lean, plain):
        torch.manual_seed(0)  # the same drop-path draws
        maps = model(x)
        sum(m.square().mean() for m in maps).backward()
        outputs.append(maps)
    for a, b in zip(*outputs, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(lean.parameters(), plain.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)
