"""Random small networks for property tests, shared so that every backend is checked on the same set.

Specs are written in the timm dialect, which can state every block kind (ds: MBConv without
expansion, ir: MBConv, er: Fused-MBConv, cn: plain conv), SE on or off, each activation and
skip/noskip, one stage line per generated dict.
"""

from __future__ import annotations

from hypothesis import strategies as st

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

network = st.fixed_dictionaries(
    {
        "stages": st.lists(stage, min_size=1, max_size=4),
        "padding": st.sampled_from(["same", "symmetric"]),
        "head": st.sampled_from(["none", "64"]),
        "resolution": st.sampled_from([32, 48, 57]),
        "width": st.sampled_from([0.5, 1.0, 1.3]),
        "activation": st.sampled_from(["relu", "silu", "hard_swish"]),
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


def spec_text(net: dict, classes: int = 7) -> str:
    """A whole spec for one drawn ``network``."""
    lines = "\n".join(f"    {timm_line(s)}" for s in net["stages"])
    return (
        f'name = "prop"\ndialect = timm\ninput {{ resolution = {net["resolution"]} }}\nstem {{ channels = 16 }}\n'
        f"stages {{\n{lines}\n}}\nhead {{ channels = {net['head']} classes = {classes} }}\n"
        f"defaults {{ padding = {net['padding']} activation = {net['activation']} }}\n"
        f"scaling {{ width = {net['width']} }}\n"
    )
