"""Property tests across the IR/backend boundary: for generated networks, the PyTorch model has exactly
the parameters and MACs the IR-only analysis predicts, and accepts the IR's input size."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specdsl

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

stage = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["ds", "ir", "er", "cn"]),
        "r": st.integers(1, 2),
        "k": st.sampled_from([1, 3, 5]),
        "s": st.sampled_from([1, 2]),
        "e": st.sampled_from([1, 2, 3.5, 4]),
        "c": st.integers(4, 40),
        "se": st.sampled_from([None, 0.25, 0.5]),
        "act": st.sampled_from(["", "_nre", "_nr6", "_nhs", "_nsw"]),
        "skip": st.sampled_from(["", "_noskip", "_skip"]),
    }
)


def timm_line(s: dict) -> str:
    e = 1 if s["type"] in ("ds", "cn") else s["e"]
    se = f"_se{s['se']}" if s["se"] and s["type"] != "cn" else ""
    skip = s["skip"]
    if s["type"] == "cn":
        skip = "_skip" if skip else ""
    elif skip == "_skip":
        skip = ""
    return f"{s['type']}_r{s['r']}_k{s['k']}_s{s['s']}_e{e}_c{s['c']}{se}{s['act']}{skip}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stages=st.lists(stage, min_size=1, max_size=4),
    padding=st.sampled_from(["same", "symmetric"]),
    head=st.sampled_from(["none", "64"]),
    resolution=st.sampled_from([32, 48, 57]),
    width=st.sampled_from([0.5, 1.0, 1.3]),
)
def test_torch_model_matches_the_analysis(
    stages: list[dict], padding: str, head: str, resolution: int, width: float
) -> None:
    lines = "\n".join(f"    {timm_line(s)}" for s in stages)
    text = (
        f'name = "prop"\ndialect = timm\ninput {{ resolution = {resolution} }}\nstem {{ channels = 16 }}\n'
        f"stages {{\n{lines}\n}}\nhead {{ channels = {head} classes = 7 }}\n"
        f"defaults {{ padding = {padding} activation = relu }}\nscaling {{ width = {width} }}\n"
    )
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
