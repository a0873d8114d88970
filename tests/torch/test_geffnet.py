"""The MBConv family against gen-efficientnet 1.0.2 (geffnet), the reference implementation that defines all of it.

geffnet's metadata asks for torchvision, which would replace the CPU torch build: install it with
``pip install --no-deps geffnet==1.0.2``. Weights are imported from a seeded geffnet model whose BN affine
parameters are randomised and whose BN statistics are calibrated on image-like inputs, so every op matters.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
geffnet = pytest.importorskip("geffnet")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import specdsl  # noqa: E402
from specdsl.api import at_resolution  # noqa: E402
from specdsl.backends.torch import build  # noqa: E402
from specdsl.interop import geffnet as geffnet_import  # noqa: E402
from specdsl.ir import ModelIR  # noqa: E402
from specdsl.passes.resolve import resolve  # noqa: E402
from specdsl.passes.scaling import spread_repeats  # noqa: E402
from specdsl.weights import WeightsError  # noqa: E402
from tests.published import GEFFNET, PARAMS  # noqa: E402

from .helpers import calibrate_batch_norm, flush_denormals, images, load_ir, reference_init  # noqa: E402, F401

TOLERANCE = 1e-5  # max |ours - geffnet| relative to the largest logit, float32 on both sides
RESOLUTION = 64  # reduced: every geffnet model takes any size (symmetric padding, or dynamic TF SAME)
#: tf_ variants are the same networks with TF SAME padding and BN epsilon 1e-3.
TF_VARIANT = 'extends = "specdsl:{spec}"\nname = "tf-{spec}"\ndefaults {{ padding = same bn_eps = 0.001 }}\n'


def peer(name: str, seed: int) -> torch.nn.Module:
    """A geffnet model with geffnet's own init drawn from ``seed`` (global RNG left as it was), BN randomised."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = geffnet.create_model(name)
    reference_init(model, seed + 1)  # convs, linears and BN affine; CondConv experts keep geffnet's init
    calibrate_batch_norm(model, images(4, RESOLUTION, seed + 2))
    return model.eval()


def our_ir(spec: str, tf: bool) -> ModelIR:
    ir = specdsl.loads(TF_VARIANT.format(spec=spec), f"tf_{spec}.spec") if tf else load_ir(spec)
    return at_resolution(ir, RESOLUTION)


@pytest.mark.parametrize(
    "peer_name,spec,tf",
    [
        ("mixnet_s", "mixnet_s", False),
        ("tf_mixnet_m", "mixnet_m", True),
        ("mobilenetv3_large_100", "mobilenetv3_large_100", False),
        ("efficientnet_es", "es", False),
        ("efficientnet_cc_b0_4e", "cc_b0_4e", False),
        ("efficientnet_lite0", "lite0", False),
        ("efficientnet_lite4", "lite4", False),
        ("mnasnet_100", "mnasnet_100", False),
    ],
)
def test_logits_match_gen_efficientnet(peer_name: str, spec: str, tf: bool) -> None:
    reference = peer(peer_name, seed=60)
    ir = our_ir(spec, tf)
    x = images(2, RESOLUTION, seed=63)
    with torch.no_grad():
        expected = reference(x).double().numpy()
        ours = build(ir, weights=geffnet_import.import_weights(reference, ir)).eval()(x).double().numpy()
    scale = np.abs(expected).max()
    assert np.abs(expected[0] - expected[1]).max() > 100 * TOLERANCE * scale  # the input matters
    assert np.abs(ours - expected).max() <= TOLERANCE * scale


@functools.cache
def meta_peer(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return geffnet.create_model(name).eval()


@pytest.mark.parametrize("spec", sorted(GEFFNET))
def test_params_and_macs_are_gen_efficientnets(spec: str) -> None:
    """Re-derives tests/published.py's figures from geffnet itself (on the meta device: shapes only)."""
    name, macs = GEFFNET[spec]
    reference = meta_peer(name)
    ir = load_ir(spec)
    assert sum(p.numel() for p in reference.parameters() if p.requires_grad) == PARAMS[spec]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        reference(torch.zeros(1, 3, ir.resolution, ir.resolution, device="meta"))
    assert counter.get_total_flops() // 2 == macs == specdsl.analyze(ir).macs


def test_import_rejects_another_variant() -> None:
    with torch.random.fork_rng():
        small = geffnet.create_model("mnasnet_small")
    with pytest.raises(WeightsError, match=r"gen-efficientnet model does not fit mnasnet-100: 'conv_stem.weight'"):
        geffnet_import.import_weights(small, load_ir("mnasnet_100"))


def fused_stride_variant(ir: ModelIR, where: str) -> ModelIR:
    spec = ir.spec
    defaults = spec.defaults.model_copy(update={"fused_stride": where})
    return at_resolution(resolve(spec.model_copy(update={"defaults": defaults})), RESOLUTION)


@pytest.mark.parametrize("tf", [False, True])
def test_edgetpu_stride_follows_tensorflow(tf: bool) -> None:
    """tensorflow/tpu's MBConvBlockWithoutDepthwise strides on the 1x1 projection (its k x k expansion has stride 1);
    gen-efficientnet 1.0.2 follows it and so do the EdgeTPU specs (fused_stride = project). Later timm strides on
    the k x k conv instead: under symmetric padding the two agree (no SE in a strided EdgeTPU block, and
    subsampling commutes with BN and ReLU), under TF SAME padding (tf_efficientnet_em) they do not."""
    reference = peer("tf_efficientnet_em" if tf else "efficientnet_em", seed=70)
    ir = our_ir("em", tf)
    assert [b.stride_at for b in ir.blocks if b.kind == "fused" and b.stride == 2] == ["project", "project"]
    x = images(2, RESOLUTION, seed=73)
    state = geffnet_import.import_weights(reference, ir)
    with torch.no_grad():
        expected = reference(x).double().numpy()
        project = build(ir, weights=state).eval()(x).double().numpy()
        spatial = build(fused_stride_variant(ir, "spatial"), weights=state).eval()(x).double().numpy()
    scale = np.abs(expected).max()
    assert np.abs(project - expected).max() <= TOLERANCE * scale
    later_timm = np.abs(spatial - expected).max()
    assert later_timm > 100 * TOLERANCE * scale if tf else later_timm <= TOLERANCE * scale


@settings(max_examples=200, deadline=None)
@given(
    repeats=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    depth=st.floats(0.1, 4.0),
    trunc=st.sampled_from(["ceil", "round"]),
)
def test_depth_spread_is_gen_efficientnets(repeats: list[int], depth: float, trunc: str) -> None:
    lines = [{"line": index} for index in range(len(repeats))]
    theirs = geffnet.efficientnet_builder._scale_stage_depth(lines, repeats, depth, trunc)
    counts = [sum(1 for block in theirs if block["line"] == index) for index in range(len(repeats))]
    assert spread_repeats(repeats, depth, trunc) == counts
