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


# --------------------------------------------------------------------------- the whole MBConv family

#: One block string of a `family_network` stage. Options a block type cannot take are dropped when rendered.
family_line = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["ds", "ir", "ir", "er", "cn"]),
        "r": st.integers(1, 2),
        "k": st.sampled_from(["3", "5", "3.5", "3.5.7"]),  # mixed kernels on ds/ir
        "a": st.integers(1, 2),  # grouped 1x1 expansion (ir)
        "p": st.integers(1, 3),  # grouped 1x1 projection (ds, ir, er)
        "fc": st.sampled_from([None, 8, 24]),  # forced expansion input (er)
        "cc": st.sampled_from([None, None, 2, 3]),  # CondConv experts (ir without split convs)
        "s": st.sampled_from([1, 2]),
        "e": st.sampled_from([1, 2.5, 4]),
        "c": st.integers(8, 32),
        "se": st.sampled_from([None, 0.25, 0.5]),
        "act": st.sampled_from(["", "_nre", "_nhs"]),
    }
)

family_network = st.fixed_dictionaries(
    {
        "stages": st.lists(st.lists(family_line, min_size=1, max_size=3), min_size=1, max_size=3),
        "padding": st.sampled_from(["same", "symmetric"]),
        "resolution": st.sampled_from([32, 37]),
        "width": st.sampled_from([0.75, 1.0, 1.3]),
        "depth": st.sampled_from([0.6, 1.0, 1.7]),
        "depth_trunc": st.sampled_from(["ceil", "round"]),
        "fix_first_last": st.booleans(),
        "activation": st.sampled_from(["relu", "hard_swish", "hard_sigmoid", "silu"]),
        "se_gate": st.sampled_from(["sigmoid", "hard_sigmoid"]),
        "se_activation": st.sampled_from([None, "relu", "hard_sigmoid"]),
        "se_width": st.sampled_from(["input", "expanded 1", "expanded 8"]),
        "fused_stride": st.sampled_from(["spatial", "project"]),
        "experts_multiplier": st.sampled_from([1, 2]),
        "head": st.sampled_from(
            ["none", "48 conv_pool false", "48 conv_pool true", "40 pool_conv true", "40 pool_conv false"]
        ),
    }
)


def family_line_text(line: dict, first: bool) -> str:
    """The timm block string of one drawn line; a stage's later lines take stride 1."""
    kind = line["type"]
    mixed = kind in ("ds", "ir") and "." in line["k"]
    parts = [kind, f"r{line['r']}", f"k{line['k'] if mixed else line['k'].split('.')[0]}"]
    if kind == "ir" and line["a"] > 1 and not line["cc"]:
        parts.append("a" + ".".join(["1"] * line["a"]))
    if kind != "cn" and line["p"] > 1 and not (kind == "ir" and line["cc"]):
        parts.append("p" + ".".join(["1"] * line["p"]))
    parts += [f"s{line['s'] if first else 1}", f"e{line['e'] if kind in ('ir', 'er') else 1}", f"c{line['c']}"]
    if kind == "er" and line["fc"]:
        parts.append(f"fc{line['fc']}")
    if kind == "ir" and line["cc"] and not mixed:
        parts.append(f"cc{line['cc']}")
    if kind != "cn" and line["se"]:
        parts.append(f"se{line['se']}")
    return "_".join(parts) + line["act"]


def family_spec_text(net: dict, classes: int = 7) -> str:
    """A whole spec for one drawn ``family_network``: every option of the MBConv family in play."""
    stages = []
    for lines in net["stages"]:
        texts = [family_line_text(line, index == 0) for index, line in enumerate(lines)]
        stages.append(texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]")
    channels, form, bias = [*net["head"].split(), "conv_pool", "false"][:3]
    head = "channels = none" if channels == "none" else f"channels = {channels} form = {form} bias = {bias}"
    se_width, *divisor = net["se_width"].split()
    se = f"se_width = {se_width}" + (f" se_divisor = {divisor[0]}" if divisor else "")
    se += f" se_activation = {net['se_activation']}" if net["se_activation"] else ""
    body = "\n".join(f"    {stage}" for stage in stages)
    return (
        f'name = "family"\ndialect = timm\ninput {{ resolution = {net["resolution"]} }}\nstem {{ channels = 16 }}\n'
        f"stages {{\n{body}\n}}\nhead {{ {head} classes = {classes} }}\n"
        f"defaults {{ padding = {net['padding']} activation = {net['activation']} se_gate = {net['se_gate']} {se} "
        f"fused_stride = {net['fused_stride']} }}\n"
        f"scaling {{ width = {net['width']} depth = {net['depth']} depth_trunc = {net['depth_trunc']} "
        f"fix_first_last = {str(net['fix_first_last']).lower()} experts_multiplier = {net['experts_multiplier']} }}\n"
    )


#: One small network with every option of the family at once (the random set draws them independently).
EVERY_FAMILY_FEATURE = """\
name = "every-feature"
dialect = timm
input { resolution = 33 }
stem { channels = 16 activation = hard_swish }
stages {
    ds_r1_k3.5_s1_c16_se0.25_p1.1
    [er_r1_k3_s2_e4_c24_fc24, er_r2_k3_s1_e2_c24]
    [ir_r1_k3.5.7_a1.1_p1.1_s2_e6_c40_se0.5_nsw, ir_r2_k3_s1_e3_c40_se0.25_cc4]
    cn_r1_k1_s1_c64
}
head { channels = 48 form = pool_conv bias = true classes = 7 activation = hard_sigmoid }
defaults {
    padding = same
    activation = relu
    se_gate = hard_sigmoid
    se_activation = relu
    se_width = expanded
    se_divisor = 8
    fused_stride = project
}
scaling { width = 1.3 depth = 1.5 depth_trunc = round fix_first_last = true experts_multiplier = 2 }
"""
