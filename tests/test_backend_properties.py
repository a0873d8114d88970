"""Property tests across the IR/backend boundary: for generated networks, the PyTorch model has exactly
the parameters and MACs the IR-only analysis predicts, and accepts the IR's input size."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import specdsl
from tests.strategies import EVERY_FAMILY_FEATURE, family_network, family_spec_text, network, spec_text

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def check_against_torch(text: str, resolution: int) -> None:
    """Trainable parameters and MACs of the built model (FlopCounterMode) are the analysis's; fusing keeps outputs."""
    ir = specdsl.loads(text, "prop.spec")
    report = specdsl.analyze(ir)
    model = specdsl.build(ir, seed=1).eval()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == report.params
    x = torch.randn(1, ir.in_channels, resolution, resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        y = model(x)
    assert y.shape == (1, 7)
    assert counter.get_total_flops() // 2 == report.macs
    fused = specdsl.build(ir, seed=1).fuse()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), y, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=network)
def test_torch_model_matches_the_analysis(net: dict) -> None:
    check_against_torch(spec_text(net), net["resolution"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=family_network)
def test_torch_model_matches_the_analysis_on_family_networks(net: dict) -> None:
    """CondConv counts its per-sample conv plus the kernel mixing, as FlopCounterMode does."""
    check_against_torch(family_spec_text(net), net["resolution"])


def test_torch_model_matches_the_analysis_with_every_family_feature() -> None:
    check_against_torch(EVERY_FAMILY_FEATURE, 33)
